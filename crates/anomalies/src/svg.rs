//! `GET /api/anomalies/{id}/diagram.svg`: an anomaly's persistence diagram drawn on the server, as a standalone
//! SVG image, so the same picture serves the console, reports and e-mails (no script, no external resource,
//! presentation attributes only, so it renders under any Content-Security-Policy and in mail clients).
//!
//! The diagram: one mark per class (H0 ●, H1 ■, H2 ▲) at (birth, death) in the analysis's standardised units,
//! essential classes (death `null`) on a dotted line labelled ∞ above the finite ones, and the diagonal
//! birth = death. Fixed colours chosen for contrast on white (the image has its own white background).

use std::fmt::Write as _;

use serde_json::Value;
use vigil_http::auth::Viewer;
use vigil_http::axum::extract::{Path, State};
use vigil_http::axum::http::header;
use vigil_http::axum::response::{IntoResponse, Response};
use vigil_http::{ApiResult, AppState, Error};
use vigil_store::anomalies as db;

const W: f64 = 360.0;
const H: f64 = 360.0;
/// Left, top, right, bottom of the plot area.
const BOX: [f64; 4] = [48.0, 42.0, W - 14.0, H - 40.0];
const COLOURS: [&str; 3] = ["#1d4ed8", "#c2410c", "#7e22ce"];
const NAMES: [&str; 3] = ["H0", "H1", "H2"];

/// The (birth, death) pairs of one dimension of `persistence`; death `None` for an essential class. Entries that
/// are not `[number, number|null]` are skipped.
fn pairs(persistence: &Value, dim: &str) -> Vec<(f64, Option<f64>)> {
    persistence
        .get(dim)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| {
                    let b = p.get(0)?.as_f64().filter(|b| b.is_finite())?;
                    // `[birth, null]` is an essential class; anything else in the death slot is no pair.
                    let d = match p.get(1)? {
                        Value::Null => None,
                        v => Some(v.as_f64().filter(|d| d.is_finite())?),
                    };
                    Some((b, d))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// About five round tick values in [0, hi].
fn ticks(hi: f64) -> Vec<f64> {
    if hi.is_nan() || hi <= 0.0 || !hi.is_finite() {
        return vec![0.0];
    }
    let raw = hi / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| hi / s <= 5.0)
        .unwrap_or(10.0 * mag);
    (0..=5)
        .map(|i| f64::from(i) * step)
        .take_while(|v| *v <= hi * (1.0 + 1e-9))
        .collect()
}

/// The persistence diagram of `persistence` (`{"h0": [[b, d|null], …], "h1": …, "h2": …}`) as an SVG document.
pub fn diagram(persistence: &Value, title: &str) -> String {
    let dims: Vec<Vec<(f64, Option<f64>)>> = ["h0", "h1", "h2"]
        .iter()
        .map(|d| pairs(persistence, d))
        .collect();
    let hi = dims
        .iter()
        .flatten()
        .flat_map(|(b, d)| [Some(*b), *d])
        .flatten()
        .fold(0.0_f64, f64::max);
    let hi = if hi > 0.0 { hi } else { 1.0 };
    let inf = hi * 1.1;
    let top = inf * 1.03;
    let x = |v: f64| BOX[0] + v / top * (BOX[2] - BOX[0]);
    let y = |v: f64| BOX[3] - v / top * (BOX[3] - BOX[1]);
    let counts: Vec<String> = dims
        .iter()
        .zip(NAMES)
        .map(|(l, n)| format!("{} {n}", l.len()))
        .collect();
    let label = format!("Persistence diagram: {}", counts.join(", "));
    let mut s = String::with_capacity(4096);
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{label}" font-family="sans-serif" font-size="10">"##
    );
    let _ = write!(s, "<title>{}</title>", escape(title));
    let _ = write!(s, r##"<rect width="{W}" height="{H}" fill="#ffffff"/>"##);
    let _ = write!(
        s,
        r##"<text x="{}" y="16" font-size="12" fill="#14171c">{}</text>"##,
        BOX[0],
        escape(title)
    );
    for t in ticks(hi) {
        let (tx, ty) = (x(t), y(t));
        let _ = write!(
            s,
            r##"<line x1="{}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#e6e9ee"/><text x="{}" y="{:.1}" text-anchor="end" fill="#4f5866">{}</text><text x="{tx:.1}" y="{}" text-anchor="middle" fill="#4f5866">{}</text>"##,
            BOX[0],
            BOX[2],
            BOX[0] - 4.0,
            ty + 3.0,
            fmt(t),
            BOX[3] + 12.0,
            fmt(t)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{l}" x2="{r}" y1="{b}" y2="{b}" stroke="#4f5866"/><line x1="{l}" x2="{l}" y1="{t}" y2="{b}" stroke="#4f5866"/>"##,
        l = BOX[0],
        r = BOX[2],
        t = BOX[1],
        b = BOX[3]
    );
    let _ = write!(
        s,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#4f5866" stroke-dasharray="3 3"/>"##,
        x(0.0),
        y(0.0),
        x(top),
        y(top)
    );
    let _ = write!(
        s,
        r##"<line x1="{}" x2="{}" y1="{iy:.1}" y2="{iy:.1}" stroke="#4f5866" stroke-dasharray="1 3"/><text x="{}" y="{:.1}" text-anchor="end" fill="#4f5866">∞</text>"##,
        BOX[0],
        BOX[2],
        BOX[0] - 4.0,
        y(inf) + 3.0,
        iy = y(inf)
    );
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#4f5866">birth</text><text x="12" y="{:.1}" text-anchor="middle" fill="#4f5866" transform="rotate(-90 12 {:.1})">death</text>"##,
        (BOX[0] + BOX[2]) / 2.0,
        H - 8.0,
        (BOX[1] + BOX[3]) / 2.0,
        (BOX[1] + BOX[3]) / 2.0
    );
    for (i, list) in dims.iter().enumerate() {
        let c = COLOURS[i];
        for (b, d) in list {
            let (px, py) = (x(*b), y(d.unwrap_or(inf)));
            let tip = format!(
                "{} [{:.3}, {})",
                NAMES[i],
                b,
                d.map_or("∞".to_owned(), |d| format!("{d:.3}"))
            );
            let _ = match i {
                0 => write!(
                    s,
                    r##"<circle class="pt h0" cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{c}" fill-opacity="0.8"><title>{tip}</title></circle>"##
                ),
                1 => write!(
                    s,
                    r##"<rect class="pt h1" x="{:.1}" y="{:.1}" width="7" height="7" fill="{c}" fill-opacity="0.8"><title>{tip}</title></rect>"##,
                    px - 3.5,
                    py - 3.5
                ),
                _ => write!(
                    s,
                    r##"<path class="pt h2" d="M{px:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}Z" fill="{c}" fill-opacity="0.8"><title>{tip}</title></path>"##,
                    py - 4.5,
                    px + 4.5,
                    py + 3.5,
                    px - 4.5,
                    py + 3.5
                ),
            };
        }
    }
    // Legend.
    let mut lx = BOX[0];
    for (i, n) in NAMES.iter().enumerate() {
        let _ = write!(
            s,
            r##"<rect x="{lx}" y="22" width="9" height="9" fill="{}"/><text x="{}" y="30" fill="#14171c">{n} ({})</text>"##,
            COLOURS[i],
            lx + 12.0,
            dims[i].len()
        );
        lx += 56.0;
    }
    if dims.iter().all(Vec::is_empty) {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#4f5866" font-size="12">no classes</text>"##,
            W / 2.0,
            H / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    format!("{r}")
}

/// An anomaly's persistence diagram as an SVG image (from the analysis stored with it). Viewer. The console
/// fetches it with its bearer header and shows it as an image; reports and e-mails can embed it as is.
#[utoipa::path(get, path = "/api/anomalies/{id}/diagram.svg", tag = "anomalies",
    params(("id" = String, Path, description = "Anomaly id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The persistence diagram (empty, and titled so, for an anomaly recorded without an analysis)", content_type = "image/svg+xml", body = String),
        (status = 401, description = "Not signed in"),
        (status = 404, description = "No such anomaly"),
    ))]
pub(crate) async fn diagram_svg(
    State(state): State<AppState>,
    _viewer: Viewer,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let found = db::get(&state.store, &id)
        .await?
        .ok_or_else(|| Error::not_found("Anomaly not found"))?;
    // An anomaly posted without an analysis (`POST /api/anomalies`) still exists: it gets an empty diagram that
    // says so, as a report embedding it would want, rather than a 404 for a resource that is there.
    let empty = Value::Object(serde_json::Map::new());
    let recorded = found
        .metadata
        .get("analysis")
        .and_then(|a| a.get("persistence"))
        .filter(|p| p.is_object());
    let title = match recorded {
        Some(_) => format!("{} · anomaly {}", found.source_type, &found.id),
        None => format!(
            "{} · anomaly {} · recorded without an analysis",
            found.source_type, &found.id
        ),
    };
    let persistence = recorded.unwrap_or(&empty);
    let body = diagram(persistence, &title);
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            // An image, never a page: nothing in it may run or load, even if opened on its own.
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
            (header::CACHE_CONTROL, "private, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_mark_per_class_and_escaped_text() {
        let p = json!({"h0": [[0.0, 0.5], [0.0, null], [0.0, 0.2]], "h1": [[0.3, 0.9]], "h2": [], "junk": 1});
        let svg = diagram(&p, "cpu <&> \"x\"");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"pt h0\"").count(), 3);
        assert_eq!(svg.matches("class=\"pt h1\"").count(), 1);
        assert_eq!(svg.matches("class=\"pt h2\"").count(), 0);
        assert!(svg.contains("cpu &lt;&amp;&gt; &quot;x&quot;"));
        assert!(!svg.contains("<script") && !svg.contains("style="));
        assert!(
            svg.contains("H0 [0.000, ∞)"),
            "essential classes on the ∞ line"
        );
    }

    #[test]
    fn bad_or_empty_persistence_still_draws() {
        let svg = diagram(&json!({"h0": [["x", 1], [1.0], null, [1.0, "y"]]}), "t");
        assert!(svg.contains("no classes"));
        assert_eq!(ticks(0.0), vec![0.0]);
        let t = ticks(1.0);
        assert_eq!(t.len(), 6);
        assert!((t[1] - 0.2).abs() < 1e-12 && (t[5] - 1.0).abs() < 1e-12);
    }
}
