//! The JSON shapes of the anomaly API and the conversions between them and the store's rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vigil_http::Error;
use vigil_store::anomalies::{Anomaly, Filter, NewAnomaly, Stats};

/// The four risk levels, lowest first (the spec's thresholds: Critical > 0.8, High > 0.5, Medium > 0.2).
pub(crate) const RISK_LEVELS: [&str; 4] = ["Low", "Medium", "High", "Critical"];

/// The risk level the pipeline would give this score.
pub(crate) fn risk_of(score: f64) -> &'static str {
    if score > 0.8 {
        "Critical"
    } else if score > 0.5 {
        "High"
    } else if score > 0.2 {
        "Medium"
    } else {
        "Low"
    }
}

/// The pipeline's default alarm level (`scores.total > 65`), used when a created anomaly omits `is_anomaly`.
const DEFAULT_ANOMALY_SCORE: f64 = 0.65;

/// Anomaly times are written and read with the store's one ISO 8601 helper (re-exported for tools and tests).
pub use vigil_store::time::{format_ts, parse_ts};

/// One stored anomaly as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnomalyDoc {
    pub id: String,
    /// ISO 8601 (UTC).
    pub timestamp: String,
    pub source_type: String,
    #[schema(value_type = Object)]
    pub event_data: Value,
    pub betti_h0: i64,
    pub betti_h1: i64,
    pub betti_h2: i64,
    /// 0–1.
    pub anomaly_score: f64,
    pub is_anomaly: bool,
    /// Low, Medium, High or Critical.
    pub risk_level: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// For a stream incident (an addition to the contract's fields): its id, the same as `id`. Absent for
    /// anomalies recorded by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// For a stream incident: `open` while it lasts, `closed` once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// For a stream incident: events from its first to its last anomalous event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_count: Option<i64>,
    /// For a closed stream incident: the time of its last anomalous event (ISO 8601, UTC). `timestamp` is its
    /// start; the row's score, risk level, Betti numbers, event and analysis are its peak's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

impl From<&Anomaly> for AnomalyDoc {
    fn from(a: &Anomaly) -> Self {
        AnomalyDoc {
            id: a.id.clone(),
            timestamp: format_ts(a.ts),
            source_type: a.source_type.clone(),
            event_data: a.event_data.clone(),
            betti_h0: a.betti[0],
            betti_h1: a.betti[1],
            betti_h2: a.betti[2],
            anomaly_score: a.anomaly_score,
            is_anomaly: a.is_anomaly,
            risk_level: a.risk_level.clone(),
            metadata: a.metadata.clone(),
            incident_id: a.event_count.map(|_| a.id.clone()),
            status: a
                .event_count
                .map(|_| if a.incident_open { "open" } else { "closed" }.to_owned()),
            event_count: a.event_count,
            ended_at: a.ended_at.map(format_ts),
        }
    }
}

/// A page of anomalies.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnomalyList {
    pub data: Vec<AnomalyDoc>,
    pub page: i64,
    pub limit: i64,
    /// Rows matching the filters, over all pages.
    pub total: i64,
}

/// An ISO 8601 time as the filters and `timestamp` take it: an RFC 3339 date-time, or a bare date (midnight UTC).
/// (An offset-less date-time is read as UTC too, for the reference's data; the document states the two portable
/// forms.)
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documentation only
pub enum IsoTime {
    #[schema(format = DateTime)]
    DateTime(String),
    #[schema(format = Date)]
    Date(String),
    /// Blank: no filter (a form's empty field).
    Blank(Blank),
}

/// An empty or all-space value, taken as absent.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(pattern = r"^\s*$")]
#[allow(dead_code)] // documentation only
pub struct Blank(String);

/// The body of `POST /api/anomalies`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAnomaly {
    /// ISO 8601; now when omitted or blank.
    #[serde(default)]
    #[schema(value_type = Option<IsoTime>)]
    pub timestamp: Option<String>,
    /// 1–200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub source_type: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub event_data: Map<String, Value>,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub betti_h0: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub betti_h1: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub betti_h2: i64,
    /// 0–1.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub anomaly_score: f64,
    /// Defaults to `anomaly_score > 0.65` (the pipeline's default threshold).
    #[serde(default)]
    pub is_anomaly: Option<bool>,
    /// Low, Medium, High or Critical (any case); derived from the score when omitted.
    #[serde(default)]
    #[schema(pattern = r"^\s*(Low|Medium|High|Critical)\s*$")]
    pub risk_level: Option<String>,
    /// Persistence entropy (exported in CSV); taken from `metadata.topology_features.entropy` when omitted.
    #[serde(default)]
    #[schema(minimum = 0.0)]
    pub entropy: Option<f64>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

const MAX_SOURCE_LEN: usize = 200;

impl CreateAnomaly {
    /// Validates the body into a row for the store (422 naming the field otherwise).
    pub(crate) fn into_new(self, created_by: &str, now_ms: i64) -> Result<NewAnomaly, Error> {
        // Blank is absent, as in the filters (a form's empty field).
        let ts = match self.timestamp.as_deref().filter(|t| !t.trim().is_empty()) {
            None => now_ms,
            Some(raw) => parse_ts(raw).ok_or_else(|| {
                Error::unprocessable(format!("timestamp: {raw:?} is not an ISO 8601 date-time"))
            })?,
        };
        let source_type = self.source_type.trim().to_owned();
        if source_type.is_empty() || source_type.chars().count() > MAX_SOURCE_LEN {
            return Err(Error::unprocessable(format!(
                "source_type: must be 1 to {MAX_SOURCE_LEN} characters"
            )));
        }
        if !(self.anomaly_score.is_finite() && (0.0..=1.0).contains(&self.anomaly_score)) {
            return Err(Error::unprocessable(
                "anomaly_score: must be between 0 and 1",
            ));
        }
        for (name, v) in [
            ("betti_h0", self.betti_h0),
            ("betti_h1", self.betti_h1),
            ("betti_h2", self.betti_h2),
        ] {
            if v < 0 {
                return Err(Error::unprocessable(format!(
                    "{name}: must not be negative"
                )));
            }
        }
        let risk_level = match self.risk_level {
            None => risk_of(self.anomaly_score).to_owned(),
            Some(r) => RISK_LEVELS
                .iter()
                .find(|l| l.eq_ignore_ascii_case(r.trim()))
                .map(|l| (*l).to_owned())
                .ok_or_else(|| {
                    Error::unprocessable("risk_level: expected Low, Medium, High or Critical")
                })?,
        };
        let entropy = self.entropy.or_else(|| {
            self.metadata
                .get("topology_features")
                .and_then(|t| t.get("entropy"))
                .and_then(Value::as_f64)
        });
        // Persistence entropy −Σ p ln p over probabilities is never negative.
        if entropy.is_some_and(|e| !e.is_finite() || e < 0.0) {
            return Err(Error::unprocessable(
                "entropy: must be a finite number, 0 or more",
            ));
        }
        Ok(NewAnomaly {
            ts,
            source_type,
            event_data: Value::Object(self.event_data),
            betti: [self.betti_h0, self.betti_h1, self.betti_h2],
            anomaly_score: self.anomaly_score,
            is_anomaly: self
                .is_anomaly
                .unwrap_or(self.anomaly_score > DEFAULT_ANOMALY_SCORE),
            risk_level,
            entropy,
            metadata: Value::Object(self.metadata),
            created_by: Some(created_by.to_owned()),
        })
    }
}

/// The filters shared by list, stats and export. Kept as strings so that a bad value is a 422 naming the
/// parameter, not a generic deserialisation failure.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterQuery {
    /// ISO 8601, inclusive.
    #[param(value_type = Option<IsoTime>)]
    pub start_date: Option<String>,
    /// ISO 8601, inclusive. A bare date means that day's midnight.
    #[param(value_type = Option<IsoTime>)]
    pub end_date: Option<String>,
    /// Exact `source_type`.
    pub source: Option<String>,
    /// `true` / `false` (also `1` / `0`).
    #[param(value_type = Option<bool>)]
    pub is_anomaly: Option<String>,
    /// Low, Medium, High or Critical.
    #[param(pattern = r"^\s*(Low|Medium|High|Critical)?\s*$")]
    pub risk_level: Option<String>,
    /// Minimum `anomaly_score`, 0–1.
    #[param(value_type = Option<f64>)]
    pub min_score: Option<String>,
}

impl FilterQuery {
    pub(crate) fn to_filter(&self) -> Result<Filter, Error> {
        let date = |name: &str, v: &Option<String>| -> Result<Option<i64>, Error> {
            match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(raw) => parse_ts(raw).map(Some).ok_or_else(|| {
                    Error::unprocessable(format!("{name}: {raw:?} is not an ISO 8601 date-time"))
                }),
            }
        };
        let start_ms = date("start_date", &self.start_date)?;
        let end_ms = date("end_date", &self.end_date)?;
        let is_anomaly = match self.is_anomaly.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Some(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Some(false),
            Some(_) => return Err(Error::unprocessable("is_anomaly: expected true or false")),
        };
        let min_score = match self.min_score.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite())
                    .ok_or_else(|| Error::unprocessable("min_score: expected a number"))?,
            ),
        };
        // Any case, stored canonically; an unknown level is a mistake worth a 422, not an empty page.
        let risk_level = match text_of(&self.risk_level) {
            None => None,
            Some(r) => Some(
                RISK_LEVELS
                    .iter()
                    .find(|l| l.eq_ignore_ascii_case(&r))
                    .map(|l| (*l).to_owned())
                    .ok_or_else(|| {
                        Error::unprocessable("risk_level: expected Low, Medium, High or Critical")
                    })?,
            ),
        };
        Ok(Filter {
            start_ms,
            end_ms,
            source: text_of(&self.source),
            is_anomaly,
            risk_level,
            min_score,
        })
    }
}

fn text_of(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Paging parameters of the listing.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    pub page: Option<String>,
    /// Rows per page, 1–100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// The largest page the listing serves.
pub(crate) const MAX_LIMIT: i64 = 100;
/// Pages beyond this would need an offset no client scrolls to; refusing them keeps OFFSET arithmetic sane.
const MAX_PAGE_NUMBER: i64 = 1_000_000;

impl PageQuery {
    pub(crate) fn page_limit(&self) -> Result<(i64, i64), Error> {
        let num = |name: &str, v: &Option<String>, default: i64, max: i64| -> Result<i64, Error> {
            match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(default),
                Some(raw) => raw
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        Error::unprocessable(format!("{name}: expected an integer from 1 to {max}"))
                    }),
            }
        };
        Ok((
            num("page", &self.page, 1, MAX_PAGE_NUMBER)?,
            num("limit", &self.limit, 20, MAX_LIMIT)?,
        ))
    }
}

/// One timeline bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimelineBucket {
    /// The bucket's start, ISO 8601 (UTC).
    pub bucket: String,
    pub count: i64,
}

/// `GET /api/anomalies/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatsDoc {
    pub total_anomalies: i64,
    pub by_source: BTreeMap<String, i64>,
    /// Always the four keys Low, Medium, High, Critical.
    pub severity_distribution: BTreeMap<String, i64>,
    pub timeline: Vec<TimelineBucket>,
    /// The timeline's bucket width in seconds (0 when nothing matched).
    pub bucket_seconds: i64,
}

impl From<Stats> for StatsDoc {
    fn from(s: Stats) -> Self {
        let severity_distribution = RISK_LEVELS
            .iter()
            .map(|l| ((*l).to_owned(), s.by_risk.get(*l).copied().unwrap_or(0)))
            .collect();
        StatsDoc {
            total_anomalies: s.total,
            by_source: s.by_source,
            severity_distribution,
            timeline: s
                .timeline
                .into_iter()
                .map(|(start, count)| TimelineBucket {
                    bucket: format_ts(start),
                    count,
                })
                .collect(),
            bucket_seconds: s.bucket_ms / 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_levels_follow_the_spec_thresholds() {
        assert_eq!(risk_of(0.81), "Critical");
        assert_eq!(risk_of(0.8), "High");
        assert_eq!(risk_of(0.51), "High");
        assert_eq!(risk_of(0.5), "Medium");
        assert_eq!(risk_of(0.2), "Low");
    }

    fn body(v: Value) -> Result<CreateAnomaly, Error> {
        vigil_http::parse_json(v.to_string().as_bytes())
    }

    #[test]
    fn create_validates_and_defaults() {
        let new = body(serde_json::json!({
            "source_type": " netflow ", "anomaly_score": 0.9,
            "metadata": {"topology_features": {"entropy": 1.5}}
        }))
        .and_then(|b| b.into_new("u1", 42))
        .expect("valid");
        assert_eq!(
            (new.ts, new.source_type.as_str(), new.is_anomaly),
            (42, "netflow", true)
        );
        assert_eq!(
            (new.risk_level.as_str(), new.entropy),
            ("Critical", Some(1.5))
        );
        let new = body(
            serde_json::json!({"source_type": "s", "anomaly_score": 0.3, "risk_level": "high"}),
        )
        .and_then(|b| b.into_new("u1", 0))
        .expect("valid");
        assert_eq!((new.risk_level.as_str(), new.is_anomaly), ("High", false));
        for bad in [
            serde_json::json!({"source_type": "s", "anomaly_score": 1.5}),
            serde_json::json!({"source_type": "", "anomaly_score": 0.5}),
            serde_json::json!({"source_type": "s", "anomaly_score": 0.5, "risk_level": "Severe"}),
            serde_json::json!({"source_type": "s", "anomaly_score": 0.5, "betti_h1": -1}),
            serde_json::json!({"source_type": "s", "anomaly_score": 0.5, "timestamp": "soon"}),
            serde_json::json!({"source_type": "s", "anomaly_score": 0.5, "event_data": [1]}),
            serde_json::json!({"source_type": "s", "anomaly_score": 0.5, "admin": true}),
            serde_json::json!({"source_type": "s", "anomaly_score": 0.5, "entropy": -0.5}),
            serde_json::json!({"source_type": "s", "anomaly_score": 0.5,
                               "metadata": {"topology_features": {"entropy": -1}}}),
        ] {
            let err = body(bad.clone())
                .and_then(|b| b.into_new("u1", 0))
                .expect_err("invalid");
            assert_eq!(err.status().as_u16(), 422, "{bad}");
        }
    }

    #[test]
    fn filters_parse_or_name_the_parameter() {
        let q = FilterQuery {
            start_date: Some("2026-01-01".into()),
            is_anomaly: Some("1".into()),
            min_score: Some("0.5".into()),
            source: Some("  ".into()),
            ..FilterQuery::default()
        };
        let f = q.to_filter().expect("valid");
        let any_case = FilterQuery {
            risk_level: Some(" high ".into()),
            ..FilterQuery::default()
        };
        assert_eq!(
            any_case.to_filter().expect("valid").risk_level.as_deref(),
            Some("High")
        );
        assert_eq!(
            (f.start_ms, f.is_anomaly, f.min_score, f.source),
            (Some(1_767_225_600_000), Some(true), Some(0.5), None)
        );
        for (q, name) in [
            (
                FilterQuery {
                    end_date: Some("x".into()),
                    ..FilterQuery::default()
                },
                "end_date",
            ),
            (
                FilterQuery {
                    is_anomaly: Some("maybe".into()),
                    ..FilterQuery::default()
                },
                "is_anomaly",
            ),
            (
                FilterQuery {
                    min_score: Some("NaN".into()),
                    ..FilterQuery::default()
                },
                "min_score",
            ),
            (
                FilterQuery {
                    risk_level: Some("Severe".into()),
                    ..FilterQuery::default()
                },
                "risk_level",
            ),
        ] {
            assert!(
                q.to_filter()
                    .expect_err("invalid")
                    .to_string()
                    .starts_with(name)
            );
        }
        assert_eq!(
            PageQuery::default().page_limit().expect("defaults"),
            (1, 20)
        );
        assert!(
            PageQuery {
                limit: Some("101".into()),
                ..PageQuery::default()
            }
            .page_limit()
            .is_err()
        );
        assert!(
            PageQuery {
                page: Some("0".into()),
                ..PageQuery::default()
            }
            .page_limit()
            .is_err()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any query an attacker sends is a filter or a 422, never a panic.
        #[test]
        fn filters_never_panic(
            parts in proptest::collection::vec(proptest::option::of(".{0,30}"), 6),
        ) {
            let q = FilterQuery {
                start_date: parts[0].clone(),
                end_date: parts[1].clone(),
                source: parts[2].clone(),
                is_anomaly: parts[3].clone(),
                risk_level: parts[4].clone(),
                min_score: parts[5].clone(),
            };
            let _ = q.to_filter();
        }
    }
}
