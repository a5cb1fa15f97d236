//! `import_reference` on a reference-shaped data set: a SQLite `users` table and `user_data/<id>/features.csv`.

use std::fmt::Write as _;

use vigil_biometrics::FEATURE_NAMES;
use vigil_biometrics::extract_features;
use vigil_biometrics::synth::{Persona, SessionGenerator};
use vigil_maxidom::import::import_reference;
use vigil_maxidom::{Maxidom, MaxidomConfig};
use vigil_store::maxidom;
use vigil_store::testing::TestDb;

const ENROLLED: &str = "0b6f1f3e-3d1c-4a57-9a0e-2f4c8b1d6e70";
const DATA_ONLY: &str = "5d2a9c41-7e3b-4f68-8d15-c0a7e9b3f214";

fn csv(rows: usize, seed: u64) -> String {
    let mut g = SessionGenerator::new(Persona::alice(), seed);
    let mut out = format!("timestamp,{}\n", FEATURE_NAMES.join(","));
    for i in 0..rows {
        let f = extract_features(&g.next_payload());
        let cells: Vec<String> = f.iter().map(|v| v.to_string()).collect();
        let _ = writeln!(
            out,
            "2025-01-0{}T10:00:{:02}.5,{}",
            1 + i / 60 % 9,
            i % 60,
            cells.join(",")
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_users_and_vectors_idempotently_then_trains() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("maxidom.db");
    let hash = bcrypt::hash("legacy", 4).unwrap();
    vigil_store::reference::create_for_tests(
        &reference,
        &[
            (ENROLLED, hash.as_str()),
            ("../../etc", hash.as_str()),
            ("7a1e2b3c-0000-4000-8000-000000000001", "plain"),
        ],
    )
    .await
    .unwrap();
    let user_data = dir.path().join("user_data");
    std::fs::create_dir_all(user_data.join(ENROLLED)).unwrap();
    std::fs::create_dir_all(user_data.join(DATA_ONLY)).unwrap();
    std::fs::create_dir_all(user_data.join("not-a-profile")).unwrap();
    std::fs::write(user_data.join(ENROLLED).join("features.csv"), csv(310, 1)).unwrap();
    let mut partial = csv(5, 2);
    partial.push_str(&format!("garbage,{}\n", vec!["nan"; 15].join(",")));
    partial.push_str("2025-01-01T00:00:00,1,2\n");
    std::fs::write(user_data.join(DATA_ONLY).join("features.csv"), partial).unwrap();

    for db in TestDb::all().await {
        let service = Maxidom::new(MaxidomConfig::default());
        let mut calls = 0u64;
        let mut last = (0, 0);
        let mut progress = |done: u64, total: u64| {
            calls += 1;
            last = (done, total);
        };
        let report = import_reference(
            &db.store,
            &service,
            Some(&reference),
            Some(&user_data),
            &mut progress,
        )
        .await
        .unwrap();
        assert!(calls >= 2);
        assert_eq!(last.0, last.1);
        assert_eq!(report.users_imported, 1, "{}: {report:?}", db.label);
        assert_eq!(report.profiles_created_without_password, 1);
        assert_eq!(report.vectors_imported, 315);
        assert_eq!(report.models_trained, 1, "{report:?}");
        let reasons: Vec<&str> = report.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(report.skipped.len(), 5, "{reasons:?}");
        assert!(reasons.contains(&"profile_id is not a canonical UUID"));
        assert!(reasons.contains(&"password hash is missing or not bcrypt/Argon2"));
        assert!(reasons.contains(&"directory name is not a canonical UUID"));
        assert!(reasons.iter().any(|r| r.contains("not a finite number")));
        assert!(reasons.iter().any(|r| r.contains("cells")));

        let p = maxidom::profile(&db.store, ENROLLED)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.counts.total, 310);
        assert!(p.model_active);
        assert!(
            vigil_http::password::verify("legacy", p.password_hash.as_deref().unwrap()).is_valid()
        );
        let p2 = maxidom::profile(&db.store, DATA_ONLY)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((p2.counts.total, p2.password_hash), (5, None));

        // Second run: nothing new, nothing retrained.
        let again = import_reference(
            &db.store,
            &service,
            Some(&reference),
            Some(&user_data),
            &mut |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!((again.users_imported, again.users_already_enrolled), (0, 1));
        assert_eq!(
            (again.vectors_imported, again.vectors_already_present),
            (0, 315)
        );
        assert_eq!(again.models_trained, 0);
        assert_eq!(
            maxidom::profile(&db.store, ENROLLED)
                .await
                .unwrap()
                .unwrap()
                .model_version,
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_reference_database_is_an_error() {
    let db = TestDb::sqlite().await;
    let service = Maxidom::new(MaxidomConfig::default());
    let missing = std::path::Path::new("/nonexistent/maxidom.db");
    let err = import_reference(&db.store, &service, Some(missing), None, &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/maxidom.db"), "{err}");
}
