//! Unit tests of the public API on synthetic data (scikit-learn comparisons live in `tests/`).

use super::*;

/// A small deterministic generator for test data (independent of the crate's own RNG).
fn lcg_data(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n * d)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // Sum of uniforms: roughly bell-shaped in [-2, 2].
            let u1 = (s >> 40) as f64 / (1u64 << 24) as f64;
            let u2 = ((s >> 16) & 0xff_ffff) as f64 / (1u64 << 24) as f64;
            2.0 * (u1 + u2) - 2.0
        })
        .collect()
}

fn params(seed: u64) -> Params {
    Params {
        seed,
        ..Params::default()
    }
}

#[test]
fn default_params_are_scikit_learns() {
    let p = Params::default();
    assert_eq!(p.n_estimators, 100);
    assert_eq!(p.max_samples, MaxSamples::Auto);
    assert_eq!(p.max_features, 1.0);
    assert!(!p.bootstrap);
    assert_eq!(p.contamination, Contamination::Auto);
    assert_eq!(p.seed, 0);
}

#[test]
fn outliers_score_lower_than_inliers() {
    let d = 3;
    let mut data = lcg_data(300, d, 1);
    data.extend_from_slice(&[8.0, 8.0, 8.0, -9.0, 7.0, 0.0]);
    let f = IsolationForest::fit_matrix(&data, d, &params(3)).unwrap();
    assert_eq!(f.n_features(), 3);
    assert_eq!(f.n_trees(), 100);
    assert_eq!(f.max_samples(), 256);
    let centre = f.score_samples(&[0.0, 0.0, 0.0]);
    let far = f.score_samples(&[8.0, 8.0, 8.0]);
    let farther = f.score_samples(&[50.0, -50.0, 50.0]);
    assert!(far < centre - 0.1, "far {far} centre {centre}");
    assert!(farther < centre - 0.1, "farther {farther} centre {centre}");
    assert!((-1.0..0.0).contains(&centre));
    assert_eq!(f.predict(&[50.0, -50.0, 50.0]), -1);
    assert_eq!(f.predict(&[0.0, 0.0, 0.0]), 1);
    assert_eq!(f.offset(), -0.5);
    assert_eq!(f.decision_function(&[0.0; 3]), centre + 0.5);
}

#[test]
fn fit_is_deterministic_and_seed_dependent() {
    let data = lcg_data(200, 4, 2);
    let a = IsolationForest::fit_matrix(&data, 4, &params(11)).unwrap();
    let b = IsolationForest::fit_matrix(&data, 4, &params(11)).unwrap();
    let c = IsolationForest::fit_matrix(&data, 4, &params(12)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_bytes(), b.to_bytes());
    assert_ne!(a.to_bytes(), c.to_bytes());
}

#[test]
fn fit_and_batch_do_not_depend_on_thread_count() {
    let data = lcg_data(700, 5, 3);
    let p = Params {
        contamination: Contamination::Fraction(0.05),
        ..params(5)
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let f = IsolationForest::fit_matrix(&data, 5, &p).unwrap();
            let s = f.score_samples_batch(&data).unwrap();
            (f.to_bytes(), s)
        })
    };
    let (b1, s1) = run(1);
    let (b3, s3) = run(3);
    assert_eq!(b1, b3);
    assert_eq!(s1, s3);
    // Grown on the calling thread: the same model, byte for byte.
    let here = IsolationForest::fit_matrix_with(&data, 5, &p, Parallelism::CallingThread).unwrap();
    assert_eq!(here.to_bytes(), b1);
    let scores = here
        .score_samples_batch_with(&data, Parallelism::CallingThread)
        .unwrap();
    assert_eq!(scores, s1);
}

#[test]
fn batch_scores_equal_single_row_scores_bitwise() {
    let data = lcg_data(1000, 6, 4);
    let f = IsolationForest::fit_matrix(&data[..600 * 6], 6, &params(1)).unwrap();
    let batch = f.score_samples_batch(&data).unwrap();
    assert_eq!(batch.len(), 1000);
    for (row, &b) in data.chunks_exact(6).zip(&batch) {
        assert_eq!(f.score_samples(row).to_bits(), b.to_bits());
    }
    assert_eq!(f.score_samples_batch(&[]).unwrap(), Vec::<f64>::new());
    // Batches of at most one block take the inline path; same numbers.
    let small = f.score_samples_batch(&data[..100 * 6]).unwrap();
    assert_eq!(small[..], batch[..100]);
}

#[test]
fn single_training_row_scores_minus_half() {
    let p = Params {
        contamination: Contamination::Fraction(0.1),
        ..params(0)
    };
    let f = IsolationForest::fit(&[vec![1.0, 2.0]], &p).unwrap();
    assert_eq!(f.max_samples(), 1);
    // c(1) = 0: scikit-learn sets the ratio to 1, so every score is −2^−1.
    assert_eq!(f.score_samples(&[1.0, 2.0]), -0.5);
    assert_eq!(f.score_samples(&[100.0, -3.0]), -0.5);
    assert_eq!(f.offset(), -0.5);
    assert_eq!(f.predict(&[100.0, -3.0]), 1);
}

#[test]
fn constant_data_gives_single_leaf_trees() {
    let rows: Vec<Vec<f64>> = (0..50).map(|_| vec![4.0, 4.0]).collect();
    let f = IsolationForest::fit(&rows, &params(0)).unwrap();
    assert_eq!(f.n_nodes(), 100);
    // Every path length is c(ψ), so E[h]/c(ψ) = 1.
    assert!((f.score_samples(&[4.0, 4.0]) + 0.5).abs() < 1e-15);
    assert!((f.score_samples(&[-1e9, 1e9]) + 0.5).abs() < 1e-15);
}

#[test]
fn constant_column_is_harmless_and_one_column_works() {
    let base = lcg_data(300, 1, 5);
    let with_const: Vec<f64> = base.iter().flat_map(|&v| [7.0, v]).collect();
    let f2 = IsolationForest::fit_matrix(&with_const, 2, &params(2)).unwrap();
    let f1 = IsolationForest::fit_matrix(&base, 1, &params(2)).unwrap();
    assert!(f1.score_samples(&[10.0]) < f1.score_samples(&[0.0]));
    assert!(f2.score_samples(&[7.0, 10.0]) < f2.score_samples(&[7.0, 0.0]));
}

#[test]
fn non_finite_training_values_are_rejected_with_position() {
    let mut data = lcg_data(20, 3, 6);
    data[3 * 4 + 2] = f64::NAN;
    match IsolationForest::fit_matrix(&data, 3, &params(0)) {
        Err(Error::NonFinite { row: 4, col: 2, .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    data[3 * 4 + 2] = f64::INFINITY;
    assert!(matches!(
        IsolationForest::fit_matrix(&data, 3, &params(0)),
        Err(Error::NonFinite { row: 4, col: 2, .. })
    ));
}

#[test]
fn invalid_rows_are_reported_not_panicked() {
    let f = IsolationForest::fit_matrix(&lcg_data(50, 2, 7), 2, &params(0)).unwrap();
    assert_eq!(
        f.try_score_samples(&[1.0]),
        Err(Error::FeatureCount {
            expected: 2,
            found: 1
        })
    );
    assert!(f.score_samples(&[1.0, 2.0, 3.0]).is_nan());
    assert!(f.score_samples(&[f64::NAN, 0.0]).is_nan());
    assert!(f.decision_function(&[]).is_nan());
    assert_eq!(
        f.predict(&[f64::NAN, 0.0]),
        -1,
        "invalid input fails closed"
    );
    assert!(f.try_predict(&[0.0, f64::NAN]).is_err());
    // Infinities are ordered: they score (as far outliers).
    assert!(f.try_score_samples(&[f64::INFINITY, 0.0]).is_ok());
    assert!(matches!(
        f.score_samples_batch(&[1.0, 2.0, 3.0]),
        Err(Error::Ragged { len: 3, n_cols: 2 })
    ));
    assert!(matches!(
        f.score_samples_batch(&[1.0, 2.0, 3.0, f64::NAN]),
        Err(Error::NonFinite { row: 1, col: 1, .. })
    ));
}

#[test]
fn bad_shapes_and_params_are_errors() {
    let data = lcg_data(30, 2, 8);
    let fit = |p: Params| IsolationForest::fit_matrix(&data, 2, &p);
    assert_eq!(
        IsolationForest::fit_matrix(&[], 2, &params(0)),
        Err(Error::Empty)
    );
    assert_eq!(IsolationForest::fit(&[], &params(0)), Err(Error::Empty));
    assert_eq!(
        IsolationForest::fit_matrix(&data, 0, &params(0)),
        Err(Error::ZeroColumns)
    );
    assert!(matches!(
        IsolationForest::fit_matrix(&data[..5], 2, &params(0)),
        Err(Error::Ragged { .. })
    ));
    assert!(matches!(
        IsolationForest::fit(&[vec![1.0, 2.0], vec![1.0]], &params(0)),
        Err(Error::RowLength {
            row: 1,
            found: 1,
            expected: 2
        })
    ));
    let bad = |p: Params, name: &str| match fit(p) {
        Err(Error::InvalidParam { name: n, .. }) => assert_eq!(n, name),
        other => panic!("{name}: unexpected {other:?}"),
    };
    bad(
        Params {
            n_estimators: 0,
            ..params(0)
        },
        "n_estimators",
    );
    bad(
        Params {
            max_features: 0.0,
            ..params(0)
        },
        "max_features",
    );
    bad(
        Params {
            max_features: 1.5,
            ..params(0)
        },
        "max_features",
    );
    bad(
        Params {
            max_features: f64::NAN,
            ..params(0)
        },
        "max_features",
    );
    bad(
        Params {
            max_samples: MaxSamples::Count(0),
            ..params(0)
        },
        "max_samples",
    );
    bad(
        Params {
            max_samples: MaxSamples::Fraction(0.0),
            ..params(0)
        },
        "max_samples",
    );
    bad(
        Params {
            max_samples: MaxSamples::Fraction(1.01),
            ..params(0)
        },
        "max_samples",
    );
    bad(
        Params {
            contamination: Contamination::Fraction(0.0),
            ..params(0)
        },
        "contamination",
    );
    bad(
        Params {
            contamination: Contamination::Fraction(0.6),
            ..params(0)
        },
        "contamination",
    );
    bad(
        Params {
            contamination: Contamination::Fraction(f64::NAN),
            ..params(0)
        },
        "contamination",
    );
}

#[test]
fn max_samples_and_features_resolve_like_scikit_learn() {
    let data = lcg_data(1000, 4, 9);
    let psi = |m: MaxSamples| {
        IsolationForest::fit_matrix(
            &data,
            4,
            &Params {
                max_samples: m,
                n_estimators: 3,
                ..params(0)
            },
        )
        .unwrap()
        .max_samples()
    };
    assert_eq!(psi(MaxSamples::Auto), 256);
    assert_eq!(psi(MaxSamples::Count(100)), 100);
    assert_eq!(psi(MaxSamples::Count(5000)), 1000);
    assert_eq!(psi(MaxSamples::Fraction(0.5)), 500);
    assert_eq!(psi(MaxSamples::Fraction(0.0001)), 1);
    let p = Params {
        max_features: 0.5,
        bootstrap: true,
        ..params(4)
    };
    let f = IsolationForest::fit_matrix(&data, 4, &p).unwrap();
    assert!(f.score_samples(&[9.0, 9.0, 9.0, 9.0]) < f.score_samples(&[0.0; 4]));
    assert_eq!(depth_limit(1), 1);
    assert_eq!(depth_limit(2), 1);
    assert_eq!(depth_limit(3), 2);
    assert_eq!(depth_limit(256), 8);
    assert_eq!(depth_limit(257), 9);
}

#[test]
fn contamination_offset_is_the_training_percentile() {
    let data = lcg_data(500, 3, 10);
    for c in [0.01, 0.05, 0.1, 0.5] {
        let p = Params {
            contamination: Contamination::Fraction(c),
            ..params(3)
        };
        let f = IsolationForest::fit_matrix(&data, 3, &p).unwrap();
        let scores = f.score_samples_batch(&data).unwrap();
        assert_eq!(f.offset(), percentile_linear(&scores, 100.0 * c));
        let flagged = data.chunks_exact(3).filter(|r| f.predict(r) == -1).count();
        // Strictly below the interpolated percentile: ⌈c·(n−1)⌉ rows when scores are distinct.
        let expected = (c * 499.0).ceil() as usize;
        assert!(
            flagged.abs_diff(expected) <= 1,
            "c={c}: {flagged} vs {expected}"
        );
    }
}

#[test]
fn parsing_max_samples_and_contamination() {
    assert_eq!("auto".parse::<MaxSamples>().unwrap(), MaxSamples::Auto);
    assert_eq!("256".parse::<MaxSamples>().unwrap(), MaxSamples::Count(256));
    assert_eq!(
        "0.5".parse::<MaxSamples>().unwrap(),
        MaxSamples::Fraction(0.5)
    );
    assert_eq!(
        "1.0".parse::<MaxSamples>().unwrap(),
        MaxSamples::Fraction(1.0)
    );
    assert!("-3".parse::<MaxSamples>().is_err());
    assert!("1.5".parse::<MaxSamples>().is_err());
    assert!("x".parse::<MaxSamples>().is_err());
    assert_eq!(
        "AUTO".parse::<Contamination>().unwrap(),
        Contamination::Auto
    );
    assert_eq!(
        "0.01".parse::<Contamination>().unwrap(),
        Contamination::Fraction(0.01)
    );
    assert!("0.7".parse::<Contamination>().is_err());
    assert!("0".parse::<Contamination>().is_err());
    assert!("NaN".parse::<Contamination>().is_err());
}

fn with_fixed_crc(mut b: Vec<u8>) -> Vec<u8> {
    let n = b.len() - 4;
    let crc = crc32fast::hash(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn bytes_round_trip_exactly_and_compactly() {
    let data = lcg_data(600, 10, 11);
    let p = Params {
        contamination: Contamination::Fraction(0.01),
        max_samples: MaxSamples::Fraction(0.9),
        max_features: 0.8,
        bootstrap: true,
        ..params(77)
    };
    let f = IsolationForest::fit_matrix(&data, 10, &p).unwrap();
    let bytes = f.to_bytes();
    let g = IsolationForest::from_bytes(&bytes).unwrap();
    assert_eq!(f, g);
    assert_eq!(g.params(), &p);
    for row in data.chunks_exact(10).take(50) {
        assert_eq!(
            f.score_samples(row).to_bits(),
            g.score_samples(row).to_bits()
        );
    }
    // Internal nodes take ~9 bytes, leaves ~2-3: well under the 24 in memory.
    assert!(
        bytes.len() < f.n_nodes() * 7,
        "{} bytes for {} nodes",
        bytes.len(),
        f.n_nodes()
    );
}

#[test]
fn serde_round_trips_through_json() {
    let f = IsolationForest::fit_matrix(
        &lcg_data(100, 2, 12),
        2,
        &Params {
            n_estimators: 5,
            ..params(1)
        },
    )
    .unwrap();
    let json = serde_json::to_string(&f).unwrap();
    let g: IsolationForest = serde_json::from_str(&json).unwrap();
    assert_eq!(f, g);
    let err = serde_json::from_str::<IsolationForest>("[1,2,3]").unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
}

#[test]
fn incompatible_or_damaged_models_are_rejected() {
    let f = IsolationForest::fit_matrix(
        &lcg_data(100, 2, 13),
        2,
        &Params {
            n_estimators: 4,
            ..params(1)
        },
    )
    .unwrap();
    let bytes = f.to_bytes();

    let mut v2 = bytes.clone();
    v2[4..6].copy_from_slice(&2u16.to_le_bytes());
    let e = IsolationForest::from_bytes(&v2).unwrap_err();
    assert_eq!(
        e,
        Error::UnsupportedVersion {
            found: 2,
            supported: FORMAT_VERSION
        }
    );
    assert!(e.to_string().contains("version 2"));

    assert_eq!(
        IsolationForest::from_bytes(b"PK\x03\x04rest"),
        Err(Error::BadMagic)
    );
    assert_eq!(IsolationForest::from_bytes(&[]), Err(Error::BadMagic));
    assert!(matches!(
        IsolationForest::from_bytes(&bytes[..bytes.len() - 1]),
        Err(Error::Corrupt(_))
    ));
    let mut flipped = bytes.clone();
    flipped[40] ^= 1;
    assert_eq!(
        IsolationForest::from_bytes(&flipped),
        Err(Error::Corrupt("checksum mismatch".into()))
    );
    let mut extra = bytes[..bytes.len() - 4].to_vec();
    extra.push(0);
    extra.extend_from_slice(&[0; 4]);
    assert!(matches!(
        IsolationForest::from_bytes(&with_fixed_crc(extra)),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn corrupted_models_with_valid_checksums_never_panic() {
    // Past the checksum, the structural validation alone must keep scoring safe: mutate every
    // byte position (with a correct checksum) and score whatever still decodes.
    let f = IsolationForest::fit_matrix(
        &lcg_data(40, 3, 14),
        3,
        &Params {
            n_estimators: 3,
            ..params(2)
        },
    )
    .unwrap();
    let bytes = f.to_bytes();
    let mut decoded = 0;
    for pos in 0..bytes.len() - 4 {
        for delta in [1u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[pos] = b[pos].wrapping_add(delta);
            if let Ok(g) = IsolationForest::from_bytes(&with_fixed_crc(b)) {
                decoded += 1;
                let s = g.score_samples(&[0.1, -0.2, 0.3]);
                assert!(s.is_nan() || (-1.0..=0.0).contains(&s) || g.n_features() != 3);
                let _ = g.score_samples_batch(&[0.0; 30]);
            }
        }
    }
    // Threshold and offset bytes can change without breaking structure.
    assert!(decoded > 0);
}

#[test]
fn models_can_be_shared_across_threads() {
    // Services keep models behind `Arc` and score from many request threads.
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<IsolationForest>();
    shareable::<Error>();
    let f = std::sync::Arc::new(
        IsolationForest::fit_matrix(
            &lcg_data(64, 2, 15),
            2,
            &Params {
                n_estimators: 8,
                ..params(1)
            },
        )
        .unwrap(),
    );
    let expected = f.score_samples(&[0.5, -0.5]);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let f = std::sync::Arc::clone(&f);
            std::thread::spawn(move || f.score_samples(&[0.5, -0.5]))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().to_bits(), expected.to_bits());
    }
}
