//! Holds the detection floor on real data, through the pure pipeline (features → training → calibrated
//! scores), so a change that makes MaxiDOM worse on real people fails here rather than on the benchmark.
//!
//! - The real extension's 40 payloads (`../shared/data/maxidom-extension/`): trained on the owner's 24
//!   profiling sessions, every one of the owner's 10 scored sessions must outrank every impostor session.
//! - A small dev subset of real mouse data (`../shared/data/mouse-dev/`, three users, converted to payloads with
//!   the data's own converter, `python3`): enrolment on each user's first sessions, the others held out, pooled
//!   AUC over the three profiles, per payload on its own and, with the held-out sessions cut into test-like
//!   sessions of 1–10 payloads, per payload in its run and per chunk. The floor is below the measured value (see the assertion) so it catches
//!   regressions, not noise.
//!
//! Both skip, saying so, when the shared data (or python3) is not there: the data is never copied into the
//! repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use vigil_biometrics::Payload;
use vigil_biometrics::model::{StoredVector, TrainParams, train_models};
use vigil_biometrics::sequential::{Run, event_span};

fn shared(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(sub)
}

/// Mann–Whitney AUC (ties count a half), genuine scores expected higher.
fn auc(genuine: &[f64], impostor: &[f64]) -> f64 {
    let mut wins = 0.0;
    for g in genuine {
        for i in impostor {
            wins += if g > i {
                1.0
            } else if g == i {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (genuine.len() * impostor.len()) as f64
}

#[test]
fn extension_payloads_owner_outranks_impostor() {
    let dir = shared("maxidom-extension");
    if !dir.join("001_POST_train.json").exists() {
        eprintln!(
            "SKIPPED: {} is absent (shared data not mounted)",
            dir.display()
        );
        return;
    }
    let load = |i: usize| -> Payload {
        let name = if i <= 24 {
            format!("{i:03}_POST_train.json")
        } else {
            format!("{i:03}_POST_score.json")
        };
        let bytes = std::fs::read(dir.join(&name)).expect("readable payload");
        Payload::from_json(&bytes).expect("the extension's payloads parse")
    };
    let train: Vec<StoredVector> = (1..=24).map(|i| StoredVector::of(&load(i))).collect();
    let models = train_models(&train, &TrainParams::default(), 24, 0, 1).expect("trains");
    assert!(models.mouse.is_some() && models.typing.is_some());
    let score = |i: usize| models.score_payload(&load(i)).1;
    let owner: Vec<_> = (25..=34).map(score).collect();
    let impostor: Vec<_> = (35..=40).map(score).collect();
    let (g, i): (Vec<f64>, Vec<f64>) = (
        owner.iter().map(|s| s.score).collect(),
        impostor.iter().map(|s| s.score).collect(),
    );
    println!("owner scores {g:?}\nimpostor scores {i:?}");
    assert_eq!(auc(&g, &i), 1.0);
    assert!(impostor.iter().all(|s| s.is_anomaly), "{impostor:?}");
    assert!(
        owner.iter().filter(|s| s.is_anomaly).count() <= 2,
        "{owner:?}"
    );
    // The same payloads as the runs they are (consecutive on one clock): the owner's run of 10 is never
    // flagged once it has more than one payload, the impostor's is flagged throughout.
    let in_run = |range: std::ops::RangeInclusive<usize>| {
        let mut run = Run::default();
        range
            .map(|i| {
                let p = load(i);
                models
                    .score_payload(&p)
                    .1
                    .in_run(&mut run, event_span(&p), models.alpha)
            })
            .collect::<Vec<_>>()
    };
    let owner_run = in_run(25..=34);
    let impostor_run = in_run(35..=40);
    println!(
        "owner run {:?}\nimpostor run {:?}",
        owner_run.iter().map(|s| s.score).collect::<Vec<_>>(),
        impostor_run.iter().map(|s| s.score).collect::<Vec<_>>()
    );
    assert_eq!(owner_run.last().map(|s| s.run_payloads), Some(10));
    assert!(
        owner_run[1..].iter().all(|s| !s.is_anomaly),
        "{owner_run:?}"
    );
    assert!(
        impostor_run.iter().all(|s| s.is_anomaly),
        "{impostor_run:?}"
    );
}

/// The payload with every time moved by −`dt` (a new session's clock).
fn shifted(mut p: Payload, dt: f64) -> Payload {
    p.start_timestamp -= dt;
    p.end_timestamp -= dt;
    for k in &mut p.key_events {
        k.down_time -= dt;
        k.up_time -= dt;
    }
    for path in &mut p.mouse_paths {
        for pt in path {
            pt.t -= dt;
        }
    }
    for c in &mut p.clicks {
        c.t -= dt;
    }
    p
}

/// Converts one Balabit session with the data's own converter; `None` when python3 cannot run it.
fn convert(converter: &Path, session: &Path) -> Option<Vec<Payload>> {
    let out = Command::new("python3")
        .arg(converter)
        .arg(session)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| Payload::from_json(l.as_bytes()).expect("converted payloads parse"))
            .collect(),
    )
}

#[test]
fn dev_subset_pooled_auc_floor() {
    let root = shared("mouse-dev");
    let converter = root.join("tools/balabit_to_payloads.py");
    if !converter.exists() {
        eprintln!(
            "SKIPPED: {} is absent (shared data not mounted)",
            root.display()
        );
        return;
    }
    // The three smallest users keep the conversion to a few seconds.
    let users = ["user7", "user9", "user35"];
    let mut per_user = Vec::new();
    for user in users {
        let mut sessions: Vec<PathBuf> = std::fs::read_dir(root.join("training_files").join(user))
            .expect("user folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        sessions.sort();
        let mut converted = Vec::new();
        for s in &sessions {
            match convert(&converter, s) {
                Some(p) => converted.push(p),
                None => {
                    eprintln!("SKIPPED: python3 could not run {}", converter.display());
                    return;
                }
            }
        }
        // Enrolment: first sessions up to half the payloads; the rest are held out.
        let total: usize = converted.iter().map(Vec::len).sum();
        let (mut train, mut test, mut seen) = (Vec::new(), Vec::new(), 0);
        let n = converted.len();
        for (i, payloads) in converted.into_iter().enumerate() {
            if (seen as f64) < total as f64 / 2.0 && i < n - 1 {
                seen += payloads.len();
                train.extend(payloads);
            } else {
                test.push(payloads);
            }
        }
        per_user.push((train, test));
    }
    // The test-like protocol (as `scripts/maxidom/eval_dev.py`'s chunks): held-out sessions cut into
    // sessions of 1, 2, …, 10, 1, 2, … payloads, each on its own clock from 0, each scored as one run.
    let chunks: Vec<Vec<Vec<Payload>>> = per_user
        .iter()
        .map(|(_, test)| {
            let mut out = Vec::new();
            let mut len = 1;
            for session in test {
                for chunk in chunk_sizes(session.len(), &mut len) {
                    let part = &session[chunk];
                    let t0 = part[0].start_timestamp;
                    out.push(part.iter().map(|p| shifted(p.clone(), t0)).collect());
                }
            }
            out
        })
        .collect();
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    let (mut run_g, mut run_i) = (Vec::new(), Vec::new());
    let (mut last_g, mut last_i) = (Vec::new(), Vec::new());
    for (u, (train, _)) in per_user.iter().enumerate() {
        let vectors: Vec<StoredVector> = train.iter().map(StoredVector::of).collect();
        let n = vectors.len() as u64;
        let models = train_models(&vectors, &TrainParams::default(), n, 0, 1).expect("trains");
        for (v, user_chunks) in chunks.iter().enumerate() {
            for chunk in user_chunks {
                let mut run = Run::default();
                let mut last = 0.0;
                for p in chunk {
                    let s = models.score_payload(p).1;
                    let r = s.in_run(&mut run, event_span(p), models.alpha);
                    let (own, runs) = if u == v {
                        (&mut genuine, &mut run_g)
                    } else {
                        (&mut impostor, &mut run_i)
                    };
                    own.push(s.score);
                    runs.push(r.score);
                    last = r.score;
                }
                if u == v {
                    last_g.push(last);
                } else {
                    last_i.push(last);
                }
            }
        }
    }
    let a = auc(&genuine, &impostor);
    let a_run = auc(&run_g, &run_i);
    let a_last = auc(&last_g, &last_i);
    println!(
        "dev subset {users:?}: pooled AUC per payload on its own {a:.3}, per payload in its run {a_run:.3}, \
         per chunk (last payload) {a_last:.3} ({} genuine, {} impostor payloads; {} / {} chunks)",
        genuine.len(),
        impostor.len(),
        last_g.len(),
        last_i.len()
    );
    assert!(a >= FLOOR, "pooled AUC {a:.3} fell below the floor {FLOOR}");
    assert!(
        a_run >= RUN_FLOOR && a_last >= RUN_FLOOR,
        "run AUCs {a_run:.3} / {a_last:.3} fell below the floor {RUN_FLOOR}"
    );
    // Combining a session's payloads must help, not only hold.
    assert!(a_run > a, "runs {a_run:.3} vs payloads alone {a:.3}");
}

/// Consecutive ranges covering `n` payloads with lengths 1, 2, …, 10, 1, … (continuing from `len`).
fn chunk_sizes(n: usize, len: &mut usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let end = (i + *len).min(n);
        out.push(i..end);
        i = end;
        *len = *len % 10 + 1;
    }
    out
}

/// Below the values measured when the floors were set (printed by the test: 0.992 per payload, 0.996 / 0.999 in
/// runs, with the size-conditional calibration; 0.986 / 0.993 / 0.996 before it, 0.979 / 0.991 / 0.996 before the
/// turn quantiles and the p = ¼ distance), by a margin for platform noise.
const FLOOR: f64 = 0.97;
const RUN_FLOOR: f64 = 0.985;
