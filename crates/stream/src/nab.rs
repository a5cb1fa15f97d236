//! NAB-style scoring of per-point anomaly scores on a labelled corpus (the rules of
//! `shared/data/streams-dev/README.md`, the same as `scripts/stream/nab_score.py`): probation = the first
//! 15% of each file; inside a window only the first alarm counts, weighted by the scaled sigmoid of its
//! position; a missed window costs the false-negative weight; alarms outside windows cost the false-positive
//! weight scaled by their distance after the preceding window; one threshold for the whole corpus, the best
//! one; normalised 100·(raw − null)/(perfect − null). Used by the dev-set regression test and
//! `examples/nab_report.rs`.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDateTime;

use crate::config::StreamConfig;
use crate::event::Event;
use crate::state::StreamState;

/// (TP, FN, FP) weights.
pub const STANDARD: (f64, f64, f64) = (1.0, 1.0, 0.11);
pub const REWARD_LOW_FP: (f64, f64, f64) = (1.0, 1.0, 0.22);
pub const REWARD_LOW_FN: (f64, f64, f64) = (1.0, 2.0, 0.11);

/// One labelled series.
#[derive(Debug, Clone)]
pub struct Series {
    /// `category/file.csv`.
    pub name: String,
    pub times: Vec<NaiveDateTime>,
    pub values: Vec<f64>,
    /// Anomaly windows as inclusive index ranges.
    pub windows: Vec<(usize, usize)>,
}

impl Series {
    pub fn category(&self) -> &str {
        self.name.split('/').next().unwrap_or("")
    }
}

fn parse_time(s: &str) -> Result<NaiveDateTime, String> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .map_err(|e| format!("timestamp {s:?}: {e}"))
}

/// Loads every series listed in `dir/windows.json`, sorted by name.
pub fn load_corpus(dir: &Path) -> Result<Vec<Series>, String> {
    let labels = std::fs::read_to_string(dir.join("windows.json")).map_err(|e| e.to_string())?;
    let labels: std::collections::BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&labels).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (name, wins) in labels {
        let text = std::fs::read_to_string(dir.join(&name)).map_err(|e| format!("{name}: {e}"))?;
        let (mut times, mut values) = (Vec::new(), Vec::new());
        for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let (t, v) = line
                .rsplit_once(',')
                .ok_or_else(|| format!("{name}: bad line {line:?}"))?;
            times.push(parse_time(t)?);
            values.push(
                v.trim()
                    .parse::<f64>()
                    .map_err(|e| format!("{name}: {e}"))?,
            );
        }
        let mut windows = Vec::new();
        for (a, b) in wins {
            let (a, b) = (parse_time(&a)?, parse_time(&b)?);
            let lo = times.partition_point(|t| *t < a);
            let hi = times.partition_point(|t| *t <= b);
            if hi > lo {
                windows.push((lo, hi - 1));
            }
        }
        out.push(Series {
            name,
            times,
            values,
            windows,
        });
    }
    Ok(out)
}

/// Replays a series through a fresh stream (one event per point, with its timestamp) and returns each point's
/// `anomaly_score` (0 while buffering).
pub fn replay(series: &Series, cfg: &StreamConfig) -> Result<Vec<f64>, crate::StreamError> {
    let mut state = StreamState::new(&series.name);
    let mut out = Vec::with_capacity(series.values.len());
    for (t, v) in series.times.iter().zip(&series.values) {
        let event = Event::new(&series.name, *v, Some(t.and_utc()));
        let a = state.analyse(&event, cfg)?;
        out.push(a.result().map_or(0.0, |r| r.anomaly_score));
    }
    Ok(out)
}

fn sigma(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Per point after probation: (window index or None, unweighted score).
fn geometry(s: &Series) -> Vec<Option<(Option<usize>, f64)>> {
    let n = s.values.len();
    let prob = (0.15 * n as f64).floor() as usize;
    let mut win_of = vec![None; n];
    for (w, &(lo, hi)) in s.windows.iter().enumerate() {
        for x in win_of.iter_mut().take(hi + 1).skip(lo) {
            *x = Some(w);
        }
    }
    let max_tp = sigma(-1.0);
    let mut prev: Option<(usize, usize)> = None;
    let mut out = vec![None; n];
    for i in 0..n {
        let sc = match win_of[i] {
            Some(w) => {
                let (lo, hi) = s.windows[w];
                let width = hi - lo + 1;
                prev = Some((hi, width));
                sigma(-((hi - i + 1) as f64) / width as f64) / max_tp
            }
            None => match prev {
                None => -1.0,
                Some((hi, width)) => {
                    sigma((i - hi) as f64 / (width.saturating_sub(1).max(1)) as f64)
                }
            },
        };
        if i >= prob {
            out[i] = Some((win_of[i], sc));
        }
    }
    out
}

/// The score of a corpus under one profile, with the threshold optimised over the corpus.
#[derive(Debug, Clone)]
pub struct ProfileScore {
    pub threshold: f64,
    /// Normalised score per category that has windows, and `"overall"`.
    pub normalised: HashMap<String, f64>,
    /// Raw score per category (for categories without windows this is the false-alarm cost).
    pub raw: HashMap<String, f64>,
}

/// Scores `scores` (one vector per series, aligned with `corpus`) under `weights`.
pub fn score(corpus: &[Series], scores: &[Vec<f64>], weights: (f64, f64, f64)) -> ProfileScore {
    let (tp_w, fn_w, fp_w) = weights;
    let geo: Vec<_> = corpus.iter().map(geometry).collect();
    // Exact sweep over distinct scores, descending.
    let mut pts: Vec<(f64, usize, Option<usize>, f64)> = Vec::new();
    for (f, g) in geo.iter().enumerate() {
        for (i, p) in g.iter().enumerate() {
            if let Some((w, s)) = p {
                pts.push((scores[f].get(i).copied().unwrap_or(0.0), f, *w, *s));
            }
        }
    }
    pts.sort_by(|a, b| b.0.total_cmp(&a.0));
    let null: f64 = corpus.iter().map(|s| -fn_w * s.windows.len() as f64).sum();
    let mut best: HashMap<(usize, usize), f64> = HashMap::new();
    let (mut total, mut best_total, mut best_thr) = (null, null, f64::INFINITY);
    let mut i = 0;
    while i < pts.len() {
        let thr = pts[i].0;
        while i < pts.len() && pts[i].0 == thr {
            let (_, f, w, s) = pts[i];
            match w {
                None => total += s * fp_w,
                Some(w) => {
                    let new = s * tp_w;
                    match best.get(&(f, w)).copied() {
                        None => {
                            best.insert((f, w), new);
                            total += new + fn_w;
                        }
                        Some(old) if new > old => {
                            best.insert((f, w), new);
                            total += new - old;
                        }
                        Some(_) => {}
                    }
                }
            }
            i += 1;
        }
        if total > best_total + 1e-12 {
            best_total = total;
            best_thr = thr;
        }
    }
    // Per-file raw scores at the chosen threshold.
    let mut raw_cat: HashMap<String, (f64, f64, f64)> = HashMap::new();
    for (f, s) in corpus.iter().enumerate() {
        let mut raw = 0.0;
        let mut got: HashMap<usize, f64> = HashMap::new();
        for (i, p) in geo[f].iter().enumerate() {
            let Some((w, sc)) = p else { continue };
            if scores[f].get(i).copied().unwrap_or(0.0) < best_thr {
                continue;
            }
            match w {
                None => raw += sc * fp_w,
                Some(w) => {
                    got.entry(*w).or_insert(sc * tp_w);
                }
            }
        }
        raw += got.values().sum::<f64>() - fn_w * (s.windows.len() - got.len()) as f64;
        let nw = s.windows.len() as f64;
        for key in [s.category().to_owned(), "overall".to_owned()] {
            let e = raw_cat.entry(key).or_insert((0.0, 0.0, 0.0));
            e.0 += raw;
            e.1 += -fn_w * nw;
            e.2 += tp_w * nw;
        }
    }
    let mut normalised = HashMap::new();
    let mut raw = HashMap::new();
    for (k, (r, null, perfect)) in raw_cat {
        raw.insert(k.clone(), r);
        if perfect > null {
            normalised.insert(k, 100.0 * (r - null) / (perfect - null));
        }
    }
    ProfileScore {
        threshold: best_thr,
        normalised,
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, windows: Vec<(usize, usize)>) -> Series {
        let t0 = parse_time("2020-01-01 00:00:00").unwrap();
        Series {
            name: "cat/x.csv".into(),
            times: (0..n)
                .map(|i| t0 + chrono::Duration::minutes(i as i64))
                .collect(),
            values: vec![0.0; n],
            windows,
        }
    }

    #[test]
    fn perfect_null_and_early_detection() {
        let c = vec![series(100, vec![(50, 59)])];
        let none = score(&c, &[vec![0.0; 100]], STANDARD);
        assert_eq!(none.normalised["overall"], 0.0);
        let mut s = vec![0.0; 100];
        s[50] = 1.0;
        let first = score(&c, std::slice::from_ref(&s), STANDARD);
        assert!((first.normalised["overall"] - 100.0).abs() < 1e-9);
        s[70] = 1.0; // a false alarm after the window costs part of the FP weight
        let fp = score(&c, std::slice::from_ref(&s), STANDARD);
        assert!(fp.normalised["overall"] < 100.0 && fp.normalised["overall"] > 90.0);
        // Alarms in probation are ignored.
        let mut p = vec![0.0; 100];
        p[5] = 1.0;
        assert_eq!(score(&c, &[p], STANDARD).normalised["overall"], 0.0);
    }
}
