//! Geometric and degenerate-input properties of the engine (no reference tool needed).

use std::f64::consts::PI;

use vigil_topo::{
    Barcodes, DistanceMatrix, RipsParams, RipsWorkspace, TopoError, io, rips, rips_points,
};

fn long_bars(b: &Barcodes, dim: usize, min_life: f64) -> usize {
    b.dims[dim]
        .iter()
        .filter(|i| i.lifetime() > min_life)
        .count()
}

/// Deterministic pseudo-random numbers in [0, 1) (SplitMix64), so tests need no RNG crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn a_circle_has_one_long_h1_bar() {
    let n = 40;
    let coords: Vec<f64> = (0..n)
        .flat_map(|k| {
            [
                (2.0 * PI * k as f64 / n as f64).cos(),
                (2.0 * PI * k as f64 / n as f64).sin(),
            ]
        })
        .collect();
    let b = rips_points(&coords, 2, &RipsParams::default()).unwrap();
    assert_eq!(b.dims.len(), 2);
    assert_eq!(long_bars(&b, 1, 1.0), 1, "{:?}", b.dims[1]);
    // Born when neighbours connect (chord 2 sin(π/40)), dies when the inscribed triangles fill it (√3).
    let bar = b.dims[1].iter().find(|i| i.lifetime() > 1.0).unwrap();
    assert!((bar.birth - 2.0 * (PI / 40.0).sin()).abs() < 1e-5);
    assert!((bar.death - 3f64.sqrt()).abs() < 0.1);
    assert_eq!(b.dims[0].iter().filter(|i| !i.is_finite()).count(), 1);
}

#[test]
fn a_sphere_has_one_long_h2_bar() {
    // Fibonacci sphere: evenly spread points on S².
    let n = 60;
    let golden = PI * (3.0 - 5f64.sqrt());
    let coords: Vec<f64> = (0..n)
        .flat_map(|k| {
            let y = 1.0 - 2.0 * (k as f64 + 0.5) / n as f64;
            let r = (1.0 - y * y).sqrt();
            let t = golden * k as f64;
            [r * t.cos(), y, r * t.sin()]
        })
        .collect();
    let b = rips_points(
        &coords,
        3,
        &RipsParams {
            max_dim: 2,
            ..RipsParams::default()
        },
    )
    .unwrap();
    assert_eq!(long_bars(&b, 2, 0.3), 1, "{:?}", b.dims[2]);
    assert_eq!(long_bars(&b, 1, 0.3), 0, "{:?}", b.dims[1]);
}

fn projective_plane() -> DistanceMatrix {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../../../shared/data/tda/projective_plane.csv");
    let path = if shared.exists() {
        shared
    } else {
        root.join("tests/fixtures/projective_plane.csv")
    };
    io::parse(
        &std::fs::read_to_string(path).expect("fixture file"),
        io::Format::Distance,
    )
    .expect("the fixture parses")
}

#[test]
fn the_projective_plane_differs_between_z2_and_z3() {
    let dm = projective_plane();
    let z2 = rips(
        &dm,
        &RipsParams {
            max_dim: 2,
            threshold: None,
            modulus: 2,
        },
    )
    .unwrap();
    let z3 = rips(
        &dm,
        &RipsParams {
            max_dim: 2,
            threshold: None,
            modulus: 3,
        },
    )
    .unwrap();
    // H1(RP²; Z/2) = H2(RP²; Z/2) = Z/2, while with Z/3 both vanish (H1(RP²; Z) = Z/2 is torsion).
    assert_eq!(z2.dims[1].len(), 1, "{z2:?}");
    assert_eq!(z2.dims[2].len(), 1, "{z2:?}");
    assert!(z3.dims[1].is_empty(), "{z3:?}");
    assert!(z3.dims[2].is_empty(), "{z3:?}");
    assert_eq!(z2.dims[0], z3.dims[0]);
    // Z/5 behaves like Z/3 (any odd prime).
    assert_eq!(
        rips(
            &dm,
            &RipsParams {
                max_dim: 2,
                threshold: None,
                modulus: 5
            }
        )
        .unwrap(),
        z3
    );
}

#[test]
fn degenerate_sizes_never_panic() {
    let p = RipsParams {
        max_dim: 3,
        ..RipsParams::default()
    };
    let empty = rips_points(&[], 2, &p).unwrap();
    assert_eq!(empty.dims.len(), 4);
    assert!(empty.dims.iter().all(Vec::is_empty));
    let one = rips_points(&[1.0, 2.0], 2, &p).unwrap();
    assert_eq!(one.dims[0].len(), 1);
    assert!(!one.dims[0][0].is_finite());
    assert!(one.dims[1..].iter().all(Vec::is_empty));
    let two = rips_points(&[0.0, 0.0, 3.0, 4.0], 2, &p).unwrap();
    assert_eq!(two.dims[0].len(), 2);
    assert_eq!(two.dims[0][0].death, 5.0);
    assert!(two.dims[1..].iter().all(Vec::is_empty));
}

#[test]
fn duplicate_points_add_no_bars() {
    let square = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0];
    let mut doubled = square.to_vec();
    doubled.extend_from_slice(&square);
    doubled.extend_from_slice(&[0.0, 0.0]);
    let p = RipsParams {
        max_dim: 2,
        ..RipsParams::default()
    };
    let a = rips_points(&square, 2, &p).unwrap();
    let b = rips_points(&doubled, 2, &p).unwrap();
    assert_eq!(a, b);
    // All points equal: one component, nothing else.
    let same = rips_points(&[0.5; 20], 2, &p).unwrap();
    assert_eq!(same.dims[0].len(), 1);
    assert!(same.dims[1..].iter().all(Vec::is_empty));
}

#[test]
fn bad_input_is_an_error() {
    let p = RipsParams::default();
    assert!(matches!(
        rips_points(&[0.0, f64::NAN], 1, &p),
        Err(TopoError::NonFiniteCoordinate { .. })
    ));
    assert!(matches!(
        rips_points(&[0.0, f64::INFINITY], 1, &p),
        Err(TopoError::NonFiniteCoordinate { .. })
    ));
    let pts = [0.0, 1.0, 3.0];
    for modulus in [0, 1, 4, 257, 65521, 1 << 20] {
        let q = RipsParams { modulus, ..p };
        assert_eq!(
            rips_points(&pts, 1, &q),
            Err(TopoError::InvalidModulus(modulus))
        );
    }
    for t in [f64::NAN, -1.0] {
        let q = RipsParams {
            threshold: Some(t),
            ..p
        };
        assert!(matches!(
            rips_points(&pts, 1, &q),
            Err(TopoError::InvalidThreshold(_))
        ));
    }
    let q = RipsParams { max_dim: 1000, ..p };
    assert_eq!(
        rips_points(&pts, 1, &q),
        Err(TopoError::MaxDimTooLarge(1000))
    );
    // Indices of 25-simplices on 400 points do not fit in 56 bits.
    let many: Vec<f64> = (0..400).map(f64::from).collect();
    let q = RipsParams { max_dim: 25, ..p };
    assert!(matches!(
        rips_points(&many, 1, &q),
        Err(TopoError::IndexOverflow { .. })
    ));
}

#[test]
fn thresholds_from_zero_to_huge() {
    let mut rng = Rng(3);
    let coords: Vec<f64> = (0..60).map(|_| rng.next()).collect();
    let p = RipsParams {
        max_dim: 2,
        ..RipsParams::default()
    };
    let default = rips_points(&coords, 2, &p).unwrap();
    for t in [1e6, 1e300, f64::INFINITY, f64::MAX] {
        assert_eq!(
            rips_points(
                &coords,
                2,
                &RipsParams {
                    threshold: Some(t),
                    ..p
                }
            )
            .unwrap(),
            default
        );
    }
    // Nothing connects at 0: every point is its own essential component.
    let zero = rips_points(
        &coords,
        2,
        &RipsParams {
            threshold: Some(0.0),
            ..p
        },
    )
    .unwrap();
    assert_eq!(zero.dims[0].len(), 30);
    assert!(zero.dims[0].iter().all(|i| !i.is_finite()));
    // A threshold cuts bars: every reported value is within it.
    let cut = rips_points(
        &coords,
        2,
        &RipsParams {
            threshold: Some(0.2),
            ..p
        },
    )
    .unwrap();
    assert!(
        cut.dims
            .iter()
            .flatten()
            .all(|i| i.birth <= 0.2 && (!i.is_finite() || i.death <= 0.2))
    );
}

#[test]
fn infinite_distances_disconnect() {
    // Two pairs, each pair at distance 1, the pairs never connected.
    let inf = f64::INFINITY;
    let dm = DistanceMatrix::from_lower_triangular(&[1.0, inf, inf, inf, inf, 1.0]).unwrap();
    let b = rips(&dm, &RipsParams::default()).unwrap();
    assert_eq!(b.dims[0].iter().filter(|i| !i.is_finite()).count(), 2);
    assert_eq!(b.dims[0].iter().filter(|i| i.death == 1.0).count(), 2);
}

#[test]
fn sparse_and_dense_paths_agree() {
    // A threshold keeping few edges selects the sparse neighbourhood path on large inputs and the rank-space
    // path on small ones; both must give the barcodes of the full computation, cut at the threshold.
    let mut rng = Rng(11);
    let coords: Vec<f64> = (0..200 * 3).map(|_| rng.next()).collect();
    let dm = DistanceMatrix::from_points(&coords, 3).unwrap();
    let p = RipsParams {
        max_dim: 2,
        threshold: Some(0.25),
        modulus: 2,
    };
    let sparse = rips(&dm, &p).unwrap();
    // The same complex through the dense path: distances beyond the threshold made infinite.
    let n = dm.len();
    let mut lower = Vec::new();
    for i in 1..n {
        for j in 0..i {
            let d = dm.get(i, j).unwrap();
            lower.push(if d <= f64::from(0.25f32) {
                d
            } else {
                f64::INFINITY
            });
        }
    }
    let dense = rips(
        &DistanceMatrix::from_lower_triangular(&lower).unwrap(),
        &RipsParams {
            threshold: None,
            ..p
        },
    );
    assert_eq!(sparse, dense.unwrap());
    // Small input (rank-space path) with the same threshold agrees with the large-input path on a subset.
    let small_coords = &coords[..100 * 3];
    let small = rips_points(small_coords, 3, &p).unwrap();
    let mut ws = RipsWorkspace::new();
    assert_eq!(ws.compute(small_coords, 3, &p).unwrap(), small);
}

#[test]
fn workspace_reuse_matches_fresh_computations() {
    let mut rng = Rng(5);
    let mut ws = RipsWorkspace::new();
    for (n, dim, max_dim, modulus) in [
        (30, 2, 2, 2),
        (7, 3, 3, 3),
        (50, 2, 2, 2),
        (1, 2, 1, 2),
        (90, 3, 2, 5),
        (12, 1, 1, 2),
    ] {
        let coords: Vec<f64> = (0..n * dim).map(|_| rng.next()).collect();
        let p = RipsParams {
            max_dim,
            threshold: None,
            modulus,
        };
        assert_eq!(
            ws.compute(&coords, dim, &p).unwrap(),
            rips_points(&coords, dim, &p).unwrap()
        );
    }
}

#[test]
fn large_max_dim_on_few_points_is_fine() {
    let b = rips_points(
        &[0.0, 1.0, 5.0],
        1,
        &RipsParams {
            max_dim: 30,
            ..RipsParams::default()
        },
    )
    .unwrap();
    assert_eq!(b.dims.len(), 31);
    assert_eq!(b.dims[0].len(), 3);
}
