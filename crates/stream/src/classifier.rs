//! The threat classifier: risk level, MITRE ATT&CK mappings driven by measured deviations, confidence and
//! mitigation steps.
//!
//! Every mapping is triggered by a measurement against the stream's own baseline, never by the score alone:
//!
//! | evidence | condition (defaults) | mapping |
//! |---|---|---|
//! | H1 (loops) above baseline | score > 0.2 and max(z of H1 count, z of longest H1 bar) ≥ 3 with the count above its baseline mean | Command and Control, T1071 Application Layer Protocol |
//! | values outside the baseline range | score > 0.5 and some window value more than 4 baseline σ from the baseline mean | Exfiltration, T1048 Exfiltration Over Alternative Protocol |
//! | event rate far above baseline | window event rate ≥ 5 × baseline rate (client timestamps only) | Impact, T1499 Endpoint Denial of Service |
//!
//! Periodic beaconing and coordinated oscillation put loops into the delay embedding, hence H1 → C2.
//!
//! The score is the detector's calibrated one (score s ⇔ tail probability 10^(−4s), see [`crate::detector`]), so
//! the risk levels read as tail probabilities: Low p > 0.16, Medium p > 0.01, High p > 6.3·10⁻⁴, Critical
//! rarer. Events of an incident that already alarmed are capped at 0.5 and keep their evidence-based mappings.
//!
//! Confidence (0–1) is the confidence in the verdict (anomalous or not): 0 before calibration; otherwise
//! 0.5 + 0.5·|total − threshold| / (distance from the threshold to the far end of the 0–100 scale), so a
//! score on the threshold is a coin flip and a score at 0 or 100 is certain.

use serde::{Deserialize, Serialize};

/// Risk level on the 0–1 anomaly score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    /// Critical > 0.8, High > 0.5, Medium > 0.2, else Low.
    pub fn from_score(score: f64) -> Self {
        if score > 0.8 {
            Self::Critical
        } else if score > 0.5 {
            Self::High
        } else if score > 0.2 {
            Self::Medium
        } else {
            Self::Low
        }
    }

    /// The name used in JSON and in the anomalies table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
            Self::Critical => "Critical",
        }
    }
}

/// One MITRE ATT&CK mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threat {
    pub tactic: String,
    pub technique_id: String,
    pub technique: String,
    /// What was measured, with the numbers.
    pub description: String,
}

/// The `security_analysis` object of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityAnalysis {
    pub risk_level: RiskLevel,
    pub confidence: f64,
    pub threats: Vec<Threat>,
    pub mitigation: Vec<String>,
}

/// The measurements the classifier decides on. Deviations are z-scores against the stream's baseline;
/// `None` means "not measurable" (no baseline yet, no client timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ThreatEvidence {
    /// `scores.total` (0–100).
    pub total: f64,
    /// The stream's `anomaly_threshold` (0–100).
    pub threshold: f64,
    /// Whether the stream has a baseline.
    pub calibrated: bool,
    /// H1 count in the window and its baseline mean.
    pub h1: usize,
    pub h1_baseline: f64,
    /// z of the H1 count and of the longest finite H1 bar.
    pub h1_count_z: f64,
    pub h1_life_z: f64,
    /// Largest |value − baseline mean| / baseline σ in the window.
    pub max_value_dev: Option<f64>,
    /// Window event rate / baseline event rate.
    pub rate_ratio: Option<f64>,
    /// The detector evidence that drove the score, its reading (level: signed σ; spread and volatility: ratio
    /// to the learned size) and its sentence.
    pub driver: Option<crate::detector::ComponentKind>,
    pub driver_reading: f64,
    /// The detector's level reading of largest magnitude over its scales (signed σ, + above the learned level).
    pub level_z: Option<f64>,
}

/// Thresholds of the mappings. Defaults are documented in the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThreatClassifier {
    /// Minimum anomaly score (0–1) for the C2 mapping.
    pub c2_min_score: f64,
    /// Minimum H1 z for the C2 mapping.
    pub c2_min_z: f64,
    /// Minimum anomaly score (0–1) for the exfiltration mapping.
    pub exfil_min_score: f64,
    /// Baseline σ beyond which a value is outside the baseline range.
    pub exfil_range_sigmas: f64,
    /// Rate ratio for the denial-of-service mapping.
    pub dos_rate_ratio: f64,
    /// Minimum anomaly score (0–1) for the service-stop mapping.
    pub stop_min_score: f64,
    /// Largest spread (or volatility) ratio to the learned one that counts as a stopped stream.
    pub stop_max_ratio: f64,
}

impl Default for ThreatClassifier {
    fn default() -> Self {
        Self {
            c2_min_score: 0.2,
            c2_min_z: 3.0,
            exfil_min_score: 0.5,
            exfil_range_sigmas: 4.0,
            dos_rate_ratio: 5.0,
            stop_min_score: 0.5,
            stop_max_ratio: 0.2,
        }
    }
}

impl ThreatClassifier {
    /// Classifies one analysed window.
    pub fn classify(&self, ev: &ThreatEvidence) -> SecurityAnalysis {
        let total = if ev.total.is_finite() {
            ev.total.clamp(0.0, 100.0)
        } else {
            0.0
        };
        let score = total / 100.0;
        let risk_level = RiskLevel::from_score(score);
        let mut threats = Vec::new();
        let mut mitigation: Vec<String> = Vec::new();
        if !ev.calibrated {
            return SecurityAnalysis {
                risk_level,
                confidence: 0.0,
                threats,
                mitigation: vec![
                    "Stream is still calibrating its baseline; no verdict yet.".into(),
                ],
            };
        }

        use crate::detector::ComponentKind;
        let because = match ev.driver {
            Some(k) => format!(" The score was driven by the {} evidence.", k.name()),
            None => String::new(),
        };
        let h1_z = ev.h1_count_z.max(ev.h1_life_z);
        if score > self.c2_min_score && h1_z >= self.c2_min_z && (ev.h1 as f64) > ev.h1_baseline {
            threats.push(Threat {
                tactic: "Command and Control".into(),
                technique_id: "T1071".into(),
                technique: "Application Layer Protocol".into(),
                description: format!(
                    "{} persistent loop(s) (H1) against a baseline of {:.2} (H1 {:.1}σ above baseline): periodic, \
                     coordinated activity such as beaconing.{because}",
                    ev.h1, ev.h1_baseline, h1_z
                ),
            });
            mitigation.extend(
                [
                    "Identify the hosts behind this stream and inspect their outbound connections for fixed-interval callbacks.",
                    "Block or sinkhole destinations contacted at regular intervals that are not on the allow-list.",
                    "Check proxy and DNS logs for beacon-like request timing and rare user agents.",
                ]
                .map(String::from),
            );
        }
        // Only values above the learned level are data leaving: a drop (the level evidence's strongest reading
        // below the level, or the level evidence driving the score downwards) is not exfiltration.
        let level_down = (matches!(ev.driver, Some(ComponentKind::Level(_)))
            && ev.driver_reading < 0.0)
            || ev.level_z.is_some_and(|z| z < 0.0);
        if let Some(dev) = ev.max_value_dev
            && score > self.exfil_min_score
            && dev > self.exfil_range_sigmas
            && !level_down
        {
            threats.push(Threat {
                tactic: "Exfiltration".into(),
                technique_id: "T1048".into(),
                technique: "Exfiltration Over Alternative Protocol".into(),
                description: format!(
                    "Values reach {dev:.1} baseline standard deviations from the baseline mean (range limit {:.1}).{because}",
                    self.exfil_range_sigmas
                ),
            });
            mitigation.extend(
                [
                    "Review data volumes leaving the affected hosts and compare them with their usual transfer sizes.",
                    "Restrict egress to approved protocols and destinations; alert on unusual protocols (DNS, ICMP, FTP).",
                    "Preserve the affected hosts' logs and network captures for investigation.",
                ]
                .map(String::from),
            );
        }
        if let Some(ratio) = ev.rate_ratio
            && ratio >= self.dos_rate_ratio
        {
            threats.push(Threat {
                tactic: "Impact".into(),
                technique_id: "T1499".into(),
                technique: "Endpoint Denial of Service".into(),
                description: format!("Event rate is {ratio:.1} times the baseline rate."),
            });
            mitigation.extend(
                [
                    "Apply rate limiting or traffic shaping in front of the affected endpoint.",
                    "Identify the top sources of the surge and block or throttle them upstream.",
                    "Verify the endpoint's capacity headroom and enable autoscaling or failover if available.",
                ]
                .map(String::from),
            );
        }
        let flat = matches!(
            ev.driver,
            Some(ComponentKind::Spread | ComponentKind::Volatility)
        ) && ev.driver_reading.is_finite()
            && ev.driver_reading <= self.stop_max_ratio;
        if flat && score > self.stop_min_score {
            threats.push(Threat {
                tactic: "Impact".into(),
                technique_id: "T1489".into(),
                technique: "Service Stop".into(),
                description: format!(
                    "The stream stopped varying: its {} is {:.2} × the learned size.",
                    match ev.driver {
                        Some(ComponentKind::Volatility) => "step-to-step change",
                        _ => "spread",
                    },
                    ev.driver_reading
                ),
            });
            mitigation.extend(
                [
                    "Check that the service and the agent reporting this stream are running and reachable.",
                    "Look for stopped processes, disabled agents or cleared logs on the hosts behind this stream.",
                ]
                .map(String::from),
            );
        }
        if mitigation.is_empty() {
            mitigation.push(match risk_level {
                RiskLevel::Low => "No action needed; keep monitoring.".into(),
                RiskLevel::Medium => "Review recent events of this stream for unexpected changes.".into(),
                RiskLevel::High | RiskLevel::Critical => {
                    "Investigate this stream's recent events and the systems producing them; escalate to the on-call analyst."
                        .into()
                }
            });
        }

        let thr = if ev.threshold.is_finite() {
            ev.threshold.clamp(0.0, 100.0)
        } else {
            65.0
        };
        let far = if total > thr { 100.0 - thr } else { thr };
        let confidence = if far > 0.0 {
            0.5 + 0.5 * ((total - thr).abs() / far).min(1.0)
        } else {
            1.0
        };
        SecurityAnalysis {
            risk_level,
            confidence,
            threats,
            mitigation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calibrated(total: f64) -> ThreatEvidence {
        ThreatEvidence {
            total,
            threshold: 65.0,
            calibrated: true,
            ..Default::default()
        }
    }

    #[test]
    fn risk_levels() {
        assert_eq!(RiskLevel::from_score(0.81), RiskLevel::Critical);
        assert_eq!(RiskLevel::from_score(0.8), RiskLevel::High);
        assert_eq!(RiskLevel::from_score(0.51), RiskLevel::High);
        assert_eq!(RiskLevel::from_score(0.5), RiskLevel::Medium);
        assert_eq!(RiskLevel::from_score(0.21), RiskLevel::Medium);
        assert_eq!(RiskLevel::from_score(0.2), RiskLevel::Low);
        assert_eq!(RiskLevel::from_score(0.0), RiskLevel::Low);
        assert_eq!(
            serde_json::to_string(&RiskLevel::Critical).unwrap(),
            "\"Critical\""
        );
    }

    #[test]
    fn h1_deviation_maps_to_c2() {
        let c = ThreatClassifier::default();
        let ev = ThreatEvidence {
            h1: 3,
            h1_baseline: 0.2,
            h1_count_z: 5.0,
            ..calibrated(70.0)
        };
        let a = c.classify(&ev);
        assert_eq!(a.threats.len(), 1);
        assert_eq!(a.threats[0].technique_id, "T1071");
        assert_eq!(a.threats[0].tactic, "Command and Control");
        assert!(a.mitigation.len() >= 3);
        // Fewer loops than baseline is not C2, however large the z.
        let ev = ThreatEvidence {
            h1: 0,
            h1_baseline: 2.0,
            h1_count_z: 5.0,
            ..calibrated(70.0)
        };
        assert!(c.classify(&ev).threats.is_empty());
        // Nor is an H1 deviation on a low score.
        let ev = ThreatEvidence {
            h1: 3,
            h1_baseline: 0.2,
            h1_count_z: 5.0,
            ..calibrated(10.0)
        };
        assert!(c.classify(&ev).threats.is_empty());
    }

    #[test]
    fn range_maps_to_exfiltration_only_on_high_score() {
        let c = ThreatClassifier::default();
        let ev = ThreatEvidence {
            max_value_dev: Some(9.0),
            ..calibrated(60.0)
        };
        assert_eq!(c.classify(&ev).threats[0].technique_id, "T1048");
        let ev = ThreatEvidence {
            max_value_dev: Some(9.0),
            ..calibrated(40.0)
        };
        assert!(c.classify(&ev).threats.is_empty());
        let ev = ThreatEvidence {
            max_value_dev: Some(2.0),
            ..calibrated(90.0)
        };
        assert!(c.classify(&ev).threats.is_empty());
    }

    #[test]
    fn driver_shapes_the_mappings() {
        use crate::detector::ComponentKind;
        let c = ThreatClassifier::default();
        // A drop below the level, driven by the level evidence, is not exfiltration.
        let ev = ThreatEvidence {
            max_value_dev: Some(9.0),
            driver: Some(ComponentKind::Level(8)),
            driver_reading: -9.0,
            ..calibrated(90.0)
        };
        assert!(c.classify(&ev).threats.is_empty());
        let up = ThreatEvidence {
            driver_reading: 9.0,
            ..ev
        };
        let a = c.classify(&up);
        assert_eq!(a.threats[0].technique_id, "T1048");
        assert!(a.threats[0].description.contains("level evidence"));
        // A flat-lined stream maps to a stopped service.
        let flat = ThreatEvidence {
            driver: Some(ComponentKind::Spread),
            driver_reading: 0.05,
            ..calibrated(90.0)
        };
        assert_eq!(c.classify(&flat).threats[0].technique_id, "T1489");
        let busy = ThreatEvidence {
            driver_reading: 3.0,
            ..flat
        };
        assert!(c.classify(&busy).threats.is_empty());
    }

    #[test]
    fn rate_maps_to_dos() {
        let c = ThreatClassifier::default();
        let ev = ThreatEvidence {
            rate_ratio: Some(8.0),
            ..calibrated(30.0)
        };
        let a = c.classify(&ev);
        assert_eq!(a.threats[0].technique_id, "T1499");
        assert_eq!(a.threats[0].tactic, "Impact");
        let ev = ThreatEvidence {
            rate_ratio: Some(1.5),
            ..calibrated(30.0)
        };
        assert!(c.classify(&ev).threats.is_empty());
    }

    #[test]
    fn confidence_reflects_margin() {
        let c = ThreatClassifier::default();
        assert_eq!(c.classify(&calibrated(65.0)).confidence, 0.5);
        assert_eq!(c.classify(&calibrated(100.0)).confidence, 1.0);
        assert_eq!(c.classify(&calibrated(0.0)).confidence, 1.0);
        let mid = c.classify(&calibrated(82.5)).confidence;
        assert!((mid - 0.75).abs() < 1e-12);
        let uncal = ThreatEvidence {
            total: 90.0,
            threshold: 65.0,
            ..Default::default()
        };
        let a = c.classify(&uncal);
        assert_eq!(a.confidence, 0.0);
        assert!(a.threats.is_empty());
    }

    #[test]
    fn garbage_evidence_does_not_panic() {
        let c = ThreatClassifier::default();
        let ev = ThreatEvidence {
            total: f64::NAN,
            threshold: f64::INFINITY,
            calibrated: true,
            h1_count_z: f64::NAN,
            max_value_dev: Some(f64::NAN),
            rate_ratio: Some(f64::INFINITY),
            ..Default::default()
        };
        let a = c.classify(&ev);
        assert_eq!(a.risk_level, RiskLevel::Low);
        assert!(a.confidence.is_finite());
    }
}
