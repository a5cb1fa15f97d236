//! End-to-end behaviour of `StreamState::analyse`: result shape, buffering, determinism, persistence of the
//! state, calibration, regime changes and the threat mappings.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use vigil_stream::bench_data::SplitMix;
use vigil_stream::ring::Segment;
use vigil_stream::{Analysis, Event, STATE_VERSION, StreamConfig, StreamError, StreamState};

fn t0() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("valid epoch")
}

/// Gaussian noise around 10, one event per second.
fn noise(stream: &str, n: usize, seed: u64) -> Vec<Event> {
    let mut r = SplitMix::new(seed);
    (0..n)
        .map(|i| {
            Event::new(
                stream,
                10.0 + r.normal(),
                Some(t0() + Duration::seconds(i as i64)),
            )
        })
        .collect()
}

fn run(state: &mut StreamState, events: &[Event], cfg: &StreamConfig) -> Vec<Analysis> {
    events
        .iter()
        .map(|e| state.analyse(e, cfg).expect("analysis succeeds"))
        .collect()
}

#[test]
fn buffers_until_min_events_then_reports_the_contract_shape() {
    let cfg = StreamConfig::default();
    let mut s = StreamState::new("default");
    let out = run(&mut s, &noise("default", 12, 1), &cfg);
    for (i, a) in out.iter().take(9).enumerate() {
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            json!({"status": "buffering", "count": i + 1})
        );
    }
    let v = serde_json::to_value(&out[9]).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "stream",
        "window_size",
        "timestamp",
        "betti_numbers",
        "persistence",
        "topology_features",
        "scores",
        "anomaly_score",
        "is_anomaly",
        "security_analysis",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    assert_eq!(v["stream"], "default");
    assert_eq!(v["window_size"], 10);
    assert_eq!(v["timestamp"], "2026-01-01T00:00:09Z");
    for k in ["h0", "h1", "h2"] {
        assert!(v["betti_numbers"][k].is_u64());
        assert!(v["persistence"][k].is_array());
    }
    // H0 has exactly one essential class, serialised with a null death.
    let h0 = v["persistence"]["h0"].as_array().unwrap();
    assert_eq!(h0.iter().filter(|p| p[1].is_null()).count(), 1);
    assert!(v["betti_numbers"]["h0"].as_u64().unwrap() >= 1);
    let land = &v["topology_features"]["landscape"];
    assert_eq!(land["x"].as_array().unwrap().len(), 100);
    assert_eq!(land["y"].as_array().unwrap().len(), 100);
    for k in ["total", "betti", "entropy", "ml"] {
        let x = v["scores"][k].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&x));
    }
    assert_eq!(
        v["anomaly_score"].as_f64().unwrap(),
        v["scores"]["total"].as_f64().unwrap() / 100.0
    );
    assert_eq!(v["is_anomaly"], false);
    assert_eq!(v["calibrated"], false);
    let sa = &v["security_analysis"];
    assert_eq!(sa["risk_level"], "Low");
    assert!(sa["threats"].is_array() && sa["mitigation"].is_array());
    assert!(sa["confidence"].is_number());
}

#[test]
fn window_is_capped_at_window_size() {
    let cfg = StreamConfig::default();
    let mut s = StreamState::new("w");
    let out = run(&mut s, &noise("w", 70, 2), &cfg);
    assert_eq!(out[49].result().unwrap().window_size, 50);
    assert_eq!(out[69].result().unwrap().window_size, 50);
}

#[test]
fn deterministic_results_and_states() {
    let cfg = StreamConfig::default();
    let events = noise("d", 220, 3);
    let (mut a, mut b) = (StreamState::new("d"), StreamState::new("d"));
    let ra = serde_json::to_string(&run(&mut a, &events, &cfg)).unwrap();
    let rb = serde_json::to_string(&run(&mut b, &events, &cfg)).unwrap();
    assert_eq!(ra, rb);
    assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
}

#[test]
fn state_survives_serialisation_mid_stream() {
    let cfg = StreamConfig::default();
    let events = noise("r", 260, 4);
    let mut whole = StreamState::new("r");
    let expected = run(&mut whole, &events, &cfg);

    let mut first = StreamState::new("r");
    run(&mut first, &events[..180], &cfg);
    assert!(first.is_calibrated(), "calibrated after 50 + 100 events");
    let bytes = first.to_json().unwrap();
    let mut restored = StreamState::from_json(&bytes).unwrap();
    let rest = run(&mut restored, &events[180..], &cfg);
    let same =
        serde_json::to_string(&rest).unwrap() == serde_json::to_string(&expected[180..]).unwrap();
    assert!(
        same,
        "results after a restore differ from the uninterrupted run"
    );
}

#[test]
fn parts_round_trip_and_a_calibrated_state_needs_its_model() {
    let cfg = StreamConfig::default();
    let events = noise("p", 230, 6);
    let mut whole = StreamState::new("p");
    let expected = run(&mut whole, &events, &cfg);
    let mut s = StreamState::new("p");
    run(&mut s, &events[..200], &cfg);
    let parts = s.to_parts().unwrap();
    assert!(parts.model.is_some());
    assert_eq!(parts.model_generation, s.refits());
    assert!(matches!(
        StreamState::from_parts(&parts.core, None, &parts.segments),
        Err(StreamError::StateDecode(_))
    ));
    // Nor without its rings' segments.
    assert!(matches!(
        StreamState::from_parts(&parts.core, parts.model.as_deref(), &[]),
        Err(StreamError::StateDecode(_))
    ));
    let mut back =
        StreamState::from_parts(&parts.core, parts.model.as_deref(), &parts.segments).unwrap();
    let rest = run(&mut back, &events[200..], &cfg);
    assert!(
        serde_json::to_string(&rest).unwrap() == serde_json::to_string(&expected[200..]).unwrap()
    );
    // Before calibration there is no model to store.
    let fresh = StreamState::new("p").to_parts().unwrap();
    assert!(fresh.model.is_none());
    // A store holding the current generation gets the same core and no model; an older one gets the model.
    let same = s.to_parts_after(Some(s.refits())).unwrap();
    assert_eq!(
        (same.core, same.model, same.model_generation),
        (parts.core.clone(), None, s.refits())
    );
    let older = s.to_parts_after(Some(s.refits() - 1)).unwrap();
    assert_eq!(older.model, parts.model);
}

/// A store of segments that behaves like `stream_segments`: upsert by (ring, index), prune by range.
#[derive(Default)]
struct SegmentStore(std::collections::BTreeMap<(String, u64), Segment>);

impl SegmentStore {
    fn apply(&mut self, parts: &vigil_stream::StateParts) {
        for s in &parts.segments {
            self.0.insert((s.ring.clone(), s.index), s.clone());
        }
        for p in &parts.prunes {
            self.0
                .retain(|(ring, i), _| *ring != p.ring || (p.keep_from..p.keep_until).contains(i));
        }
    }

    fn all(&self) -> Vec<Segment> {
        self.0.values().cloned().collect()
    }
}

/// A configuration whose rings wrap within a few hundred events.
fn small_rings() -> StreamConfig {
    let mut cfg = StreamConfig {
        calibration_windows: 30,
        refit_period: 40,
        ..Default::default()
    };
    cfg.detector.memory = 150;
    cfg.detector.history = 120;
    cfg.detector.dim = 10;
    cfg.detector.level = true;
    cfg.detector.spread = true;
    cfg
}

#[test]
fn checkpoints_write_only_what_changed_and_a_reload_continues_bit_for_bit() {
    let cfg = small_rings();
    let events = noise("k", 700, 8);
    let mut whole = StreamState::new("k");
    let expected = run(&mut whole, &events, &cfg);

    let mut store = SegmentStore::default();
    let mut s = StreamState::new("k");
    let mut generation = None;
    let (mut model, mut core) = (None, Vec::new());
    for (i, e) in events.iter().enumerate() {
        s.analyse(e, &cfg).unwrap();
        let parts = s.to_parts_after(generation).unwrap();
        if parts.model.is_some() {
            model = parts.model.clone();
            generation = Some(parts.model_generation);
        }
        store.apply(&parts);
        s.mark_stored();
        core = parts.core;
        if i > 0 && parts.model.is_none() {
            // A checkpoint writes, per ring, the segment holding the last stored end and at most the one that
            // opened after it: never a whole ring (a calibration refills the normal rows).
            let mut per_ring = std::collections::HashMap::new();
            for x in &parts.segments {
                *per_ring.entry(x.ring.as_str()).or_insert(0) += 1;
            }
            assert!(
                per_ring.values().all(|&n| n <= 2),
                "event {i}: {per_ring:?}"
            );
        }
        if i % 97 == 0 || i == 500 {
            // What is stored restores the state exactly, and it goes on as the uninterrupted run did.
            let back = StreamState::from_parts(&core, model.as_deref(), &store.all()).unwrap();
            let mut a = back.clone();
            let mut b = s.clone();
            let next = (i + 1).min(events.len())..(i + 40).min(events.len());
            let ra = serde_json::to_string(&run(&mut a, &events[next.clone()], &cfg)).unwrap();
            let rb = serde_json::to_string(&run(&mut b, &events[next], &cfg)).unwrap();
            assert_eq!(ra, rb, "after event {i}");
        }
    }
    let mut back = StreamState::from_parts(&core, model.as_deref(), &store.all()).unwrap();
    assert_eq!(back.to_json().unwrap(), whole.to_json().unwrap());
    assert_eq!(
        serde_json::to_string(&run(&mut back, &noise("k", 30, 9), &cfg)).unwrap(),
        serde_json::to_string(&run(&mut whole, &noise("k", 30, 9), &cfg)).unwrap()
    );
    assert_eq!(expected.len(), 700);
}

#[test]
fn a_state_stored_with_inline_rings_is_still_read() {
    // Version 3 stored the rings inline (f64 buffers as base64, the normal rows as arrays); it is read as is and
    // its first checkpoint stores the rings apart.
    let cfg = small_rings();
    let events = noise("o", 400, 10);
    let mut whole = StreamState::new("o");
    let expected = run(&mut whole, &events, &cfg);
    let mut s = StreamState::new("o");
    run(&mut s, &events[..300], &cfg);
    let parts = s.to_parts().unwrap();
    let mut core: Value = serde_json::from_slice(&parts.core).unwrap();
    let entries = |ring: &str, meta: &Value, width: usize| -> Vec<f64> {
        let (end, len) = (meta["end"].as_u64().unwrap(), meta["len"].as_u64().unwrap());
        let mut out = Vec::new();
        for seg in parts.segments.iter().filter(|x| x.ring == ring) {
            for (k, c) in seg.data.chunks_exact(8 * width).enumerate() {
                let idx = seg.first + k as u64;
                if (end - len..end).contains(&idx) {
                    out.extend(
                        c.chunks_exact(8)
                            .map(|b| f64::from_le_bytes(b.try_into().unwrap())),
                    );
                }
            }
        }
        assert_eq!(out.len() as u64, len * width as u64, "{ring}");
        out
    };
    let b64 = |xs: Vec<f64>| {
        use base64::Engine as _;
        let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        json!(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    let v = core["detector"]["values"].clone();
    core["detector"]["values"] = b64(entries("detector.values", &v, 1));
    let c = core["detector"]["combined"].clone();
    core["detector"]["combined"] = b64(entries("detector.combined", &c, 1));
    let n = core["detector"]["evidence"].as_array().unwrap().len();
    for i in 0..n {
        let m = core["detector"]["evidence"][i].clone();
        core["detector"]["evidence"][i] = b64(entries(&format!("detector.evidence.{i}"), &m, 1));
    }
    let r = core["recent_normal"].clone();
    let rows = entries("recent_normal", &r, 10);
    core["recent_normal"] = json!(rows.chunks(10).map(|c| c.to_vec()).collect::<Vec<_>>());
    core["version"] = json!(3);
    let old = serde_json::to_vec(&core).unwrap();

    let mut back = StreamState::from_parts(&old, parts.model.as_deref(), &[]).unwrap();
    let again = back.to_parts_after(Some(back.refits())).unwrap();
    let total =
        |p: &vigil_stream::StateParts| p.segments.iter().map(|x| x.data.len()).sum::<usize>();
    assert_eq!(
        total(&again),
        total(&parts),
        "the first checkpoint stores every ring"
    );
    let rest = run(&mut back, &events[300..], &cfg);
    assert_eq!(
        serde_json::to_string(&rest).unwrap(),
        serde_json::to_string(&expected[300..]).unwrap()
    );
}

#[test]
fn other_state_versions_and_garbage_are_refused() {
    let s = StreamState::new("v");
    let mut v: Value = serde_json::from_slice(&s.to_json().unwrap()).unwrap();
    v["core"]["version"] = json!(STATE_VERSION + 1);
    let err = StreamState::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, StreamError::StateVersion { .. }));
    v["core"]["version"] = json!(2);
    let err = StreamState::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, StreamError::StateVersion { .. }));
    assert!(matches!(
        StreamState::from_json(b"{\"version\":1}"),
        Err(StreamError::StateDecode(_))
    ));
    assert!(StreamState::from_json(b"not json").is_err());
}

#[test]
fn streams_never_share_state() {
    let cfg = StreamConfig::default();
    let mut a = StreamState::new("a");
    let e = Event::new("b", 1.0, None);
    assert!(matches!(
        a.analyse(&e, &cfg),
        Err(StreamError::WrongStream { .. })
    ));
    assert_eq!(a.events(), 0);
}

#[test]
fn invalid_config_is_an_error_not_a_panic() {
    let cfg = StreamConfig {
        window_size: 3,
        ..Default::default()
    };
    let mut s = StreamState::new("c");
    assert!(matches!(
        s.analyse(&Event::new("c", 1.0, None), &cfg),
        Err(StreamError::Config(_))
    ));
}

#[test]
fn calibration_then_scores() {
    let cfg = StreamConfig::default();
    let mut s = StreamState::new("k");
    let out = run(&mut s, &noise("k", 200, 5), &cfg);
    let first_calibrated = out
        .iter()
        .position(|a| a.result().is_some_and(|r| r.calibrated))
        .unwrap();
    // The detector's first evidence comes with event 2·dim + k − 1 (index 41), its first score once it has
    // `min_history` (10) evidences to rank against.
    assert_eq!(first_calibrated, 41 + 10);
    for a in &out[..first_calibrated] {
        if let Some(r) = a.result() {
            assert_eq!(r.scores.total, 0.0);
            assert!(!r.is_anomaly);
            assert_eq!(r.security_analysis.confidence, 0.0);
        }
    }
    // Plain noise stays normal once calibrated.
    assert!(out[first_calibrated..].iter().all(|a| !a.is_anomaly()));
}

#[test]
fn degenerate_inputs_never_fail() {
    let cfg = StreamConfig::default();
    let cases: Vec<Vec<f64>> = vec![
        vec![5.0; 300],
        (0..300)
            .map(|i| if i % 2 == 0 { 1e100 } else { -1e100 })
            .collect(),
        (0..300)
            .map(|i| if i == 200 { 1e90 } else { 0.0 })
            .collect(),
        (0..300).map(|i| i as f64 * 1e-12).collect(),
    ];
    for values in cases {
        let mut s = StreamState::new("x");
        for v in values {
            let a = s
                .analyse(&Event::new("x", v, None), &cfg)
                .expect("no failure on finite input");
            let json = serde_json::to_string(&a).unwrap();
            assert!(!json.contains("NaN") && !json.contains("inf"));
        }
    }
}

#[test]
fn a_persistent_regime_change_alarms_at_the_change_not_for_ever() {
    let cfg = StreamConfig::default();
    let mut r = SplitMix::new(9);
    // Noise σ 1 for 250 events, then σ 4 for good.
    let events: Vec<Event> = (0..700)
        .map(|i| {
            let sd = if i < 250 { 1.0 } else { 4.0 };
            Event::new(
                "g",
                10.0 + sd * r.normal(),
                Some(t0() + Duration::seconds(i)),
            )
        })
        .collect();
    let mut s = StreamState::new("g");
    let out = run(&mut s, &events, &cfg);
    let alarms: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_anomaly()).collect();
    assert!(
        alarms.iter().any(|&i| (250..320).contains(&i)),
        "alarm at the change: {alarms:?}"
    );
    assert!(
        alarms.iter().all(|&i| i < 550),
        "no alarms once the new regime is learnt: {alarms:?}"
    );
}

#[test]
fn spikes_beyond_the_baseline_range_map_to_exfiltration() {
    let cfg = StreamConfig::default();
    let mut events = noise("c2", 400, 11);
    for e in events.iter_mut().skip(300).step_by(10) {
        e.value += 6.0;
    }
    let mut s = StreamState::new("c2");
    let out = run(&mut s, &events, &cfg);
    let anomalies: Vec<_> = out[300..]
        .iter()
        .filter_map(|a| a.result())
        .filter(|r| r.is_anomaly)
        .collect();
    assert!(!anomalies.is_empty());
    let ids: Vec<&str> = anomalies
        .iter()
        .flat_map(|r| {
            r.security_analysis
                .threats
                .iter()
                .map(|t| t.technique_id.as_str())
        })
        .collect();
    assert!(
        ids.contains(&"T1048"),
        "spikes beyond the baseline range: {ids:?}"
    );
    for r in &anomalies {
        assert!(r.security_analysis.confidence > 0.5);
        assert!(!r.security_analysis.mitigation.is_empty());
    }
}

#[test]
fn coordinated_oscillation_maps_to_command_and_control() {
    let cfg = StreamConfig::default();
    let mut events = noise("osc", 420, 0x5eed);
    for (i, e) in events.iter_mut().enumerate().skip(300).take(100) {
        e.value += 3.0 * (std::f64::consts::TAU * (i - 300) as f64 / 8.0).sin();
    }
    let mut s = StreamState::new("osc");
    let out = run(&mut s, &events, &cfg);
    // The mapping follows the evidence of every scored window (High risk or not), so the events of an
    // incident that alarmed once keep it too.
    let c2 = out[300..]
        .iter()
        .filter_map(Analysis::result)
        .filter(|r| r.anomaly_score > 0.2)
        .any(|r| {
            r.security_analysis
                .threats
                .iter()
                .any(|t| t.technique_id == "T1071" && t.tactic == "Command and Control")
        });
    assert!(c2, "loops in the embedding map to C2");
}

#[test]
fn event_rate_surge_maps_to_denial_of_service() {
    let cfg = StreamConfig::default();
    let mut r = SplitMix::new(12);
    // One event per second, then twenty per second with the same values.
    let mut t = t0();
    let events: Vec<Event> = (0..320)
        .map(|i| {
            t += if i < 250 {
                Duration::seconds(1)
            } else {
                Duration::milliseconds(50)
            };
            Event::new("dos", 10.0 + r.normal(), Some(t))
        })
        .collect();
    let mut s = StreamState::new("dos");
    let out = run(&mut s, &events, &cfg);
    let last = out.last().and_then(Analysis::result).unwrap();
    let ids: Vec<&str> = last
        .security_analysis
        .threats
        .iter()
        .map(|t| t.technique_id.as_str())
        .collect();
    assert_eq!(ids, vec!["T1499"]);
    // Without client timestamps there is no rate evidence at all.
    let mut s = StreamState::new("dos");
    let plain: Vec<Event> = events
        .iter()
        .map(|e| Event::new("dos", e.value, None))
        .collect();
    let out = run(&mut s, &plain, &cfg);
    assert!(out.iter().filter_map(Analysis::result).all(|r| {
        r.security_analysis
            .threats
            .iter()
            .all(|t| t.technique_id != "T1499")
    }));
}

#[test]
fn changing_the_window_restarts_calibration() {
    let cfg = StreamConfig::default();
    let mut s = StreamState::new("cfg");
    run(&mut s, &noise("cfg", 200, 13), &cfg);
    assert!(s.is_calibrated());
    let smaller = StreamConfig {
        window_size: 30,
        ..Default::default()
    };
    let a = s.analyse(&Event::new("cfg", 10.0, None), &smaller).unwrap();
    assert!(!s.is_calibrated());
    assert_eq!(a.result().unwrap().window_size, 30);
    // A change that does not touch the features (threshold) keeps the baseline.
    let mut s = StreamState::new("cfg");
    run(&mut s, &noise("cfg", 200, 13), &cfg);
    let stricter = StreamConfig {
        anomaly_threshold: 90.0,
        ..Default::default()
    };
    s.analyse(&Event::new("cfg", 10.0, None), &stricter)
        .unwrap();
    assert!(s.is_calibrated());
}

#[test]
fn events_without_time_use_the_receive_time() {
    let cfg = StreamConfig::default();
    let mut s = StreamState::new("t");
    let mut last = None;
    for i in 0..10 {
        let e = Event::new("t", i as f64, None).received(t0() + Duration::milliseconds(1500));
        last = Some(s.analyse(&e, &cfg).unwrap());
    }
    assert_eq!(
        last.unwrap().result().unwrap().timestamp,
        "2026-01-01T00:00:01.500Z"
    );
}
