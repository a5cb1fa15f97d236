//! End-to-end through the pure pipeline: JSON bytes → payload → features → readiness → training →
//! blob → scoring, with synthetic users.

use vigil_biometrics::Payload;
use vigil_biometrics::lifecycle::{Counts, Quotas, RetrainPolicy, retraining_set};
use vigil_biometrics::model::{ProfileModels, StoredVector, TrainParams, train_models};
use vigil_biometrics::synth::{Persona, SessionGenerator};

/// Serialises and re-parses, as the server will see it.
fn over_the_wire(p: &Payload) -> Payload {
    let body = serde_json::to_vec(p).expect("payload serialises");
    Payload::from_json(&body).expect("generated payloads are valid")
}

fn flagged(models: &ProfileModels, g: &mut SessionGenerator, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            models
                .score_payload(&over_the_wire(&g.next_payload()))
                .1
                .is_anomaly
        })
        .count()
}

#[test]
fn profile_becomes_ready_trains_and_tells_users_apart() {
    let quotas = Quotas::default();
    let mut alice = SessionGenerator::new(Persona::alice(), 1);
    let mut stored: Vec<StoredVector> = Vec::new();
    let mut counts = Counts::default();
    let mut ready_at = None;
    while ready_at.is_none() {
        let v = StoredVector::of(&over_the_wire(&alice.next_payload()));
        stored.push(v);
        counts.add(&v.contract);
        assert_eq!(counts, Counts::of(stored.iter().map(|v| &v.contract)));
        if counts.is_ready(&quotas) {
            ready_at = Some(stored.len());
        }
        assert!(
            stored.len() <= 400,
            "synthetic sessions should reach the quotas well before 400"
        );
    }
    // At the total quota, or a little later when some of the first sessions did not move the mouse.
    let ready_at = ready_at.unwrap_or_default();
    assert!((30..=36).contains(&ready_at), "{ready_at}");

    let models = train_models(
        &stored,
        &TrainParams::default(),
        ready_at as u64,
        1_700_000_000_000,
        1,
    )
    .expect("trains");
    let models = ProfileModels::from_bytes(&models.to_bytes()).expect("blob round-trips");
    let own = flagged(&models, &mut alice, 100);
    let mut bob = SessionGenerator::new(Persona::bob(), 2);
    let other = flagged(&models, &mut bob, 100);
    println!("owner flagged {own}/100, impostor flagged {other}/100");
    assert!(own <= 25, "owner flagged {own}/100");
    assert!(other >= 75, "impostor flagged only {other}/100");

    // Feedback loop: accepted sessions fill the pool; a retrain on profiling + pool still accepts
    // the owner and still rejects the impostor.
    let policy = RetrainPolicy::default();
    let mut pool = Vec::new();
    while !policy.should_retrain(pool.len()) {
        let (f, s) = models.score_payload(&over_the_wire(&alice.next_payload()));
        if !s.is_anomaly {
            pool.push(f);
        }
    }
    let set = retraining_set(&stored, &pool, policy.max_profiling, policy.max_pool);
    assert_eq!(set.len(), ready_at + 300);
    let retrained =
        train_models(&set, &TrainParams::default(), 30, 1_700_000_100_000, 2).expect("retrains");
    assert_eq!(retrained.version, 2);
    let own = flagged(&retrained, &mut alice, 100);
    let other = flagged(&retrained, &mut bob, 100);
    println!("after retraining: owner flagged {own}/100, impostor flagged {other}/100");
    assert!(own <= 25 && other >= 75, "owner {own}, impostor {other}");
}
