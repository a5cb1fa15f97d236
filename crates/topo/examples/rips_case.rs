//! Runs one benchmark case once, for external peak-memory measurement (`scripts/tda/bench_compare.py
//! --memory` runs it under `/usr/bin/time`). `none` loads the input and computes nothing: the baseline.
//!
//! `cargo run --release -p vigil-topo --example rips_case -- sphere|o3|planar|cloud [none]`

use std::path::PathBuf;

use vigil_topo::{RipsParams, io, rips};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let case = args
        .next()
        .ok_or("usage: rips_case sphere|o3|planar|cloud [none]")?;
    let baseline = args.next().as_deref() == Some("none");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = |name: &str| {
        let shared = root.join("../../../shared/data/tda").join(name);
        if shared.exists() {
            shared
        } else {
            root.join("tests/fixtures").join(name)
        }
    };
    let (path, format, params) = match case.as_str() {
        "sphere" => (
            data("sphere_3_192.lower_distance_matrix"),
            io::Format::LowerDistance,
            RipsParams {
                max_dim: 2,
                ..RipsParams::default()
            },
        ),
        "o3" => (
            data("o3_1024.txt"),
            io::Format::PointCloud,
            RipsParams {
                max_dim: 3,
                threshold: Some(1.8),
                modulus: 2,
            },
        ),
        "planar" => (
            root.join("benches/data/planar_50.txt"),
            io::Format::PointCloud,
            RipsParams {
                max_dim: 2,
                ..RipsParams::default()
            },
        ),
        "cloud" => (
            root.join("benches/data/cloud3d_100.txt"),
            io::Format::PointCloud,
            RipsParams {
                max_dim: 2,
                ..RipsParams::default()
            },
        ),
        other => return Err(format!("unknown case {other}").into()),
    };
    let dm = io::parse(&std::fs::read_to_string(path)?, format)?;
    if baseline {
        println!("{} points loaded", dm.len());
        return Ok(());
    }
    let b = rips(&dm, &params)?;
    println!(
        "bars per dimension: {:?}",
        b.dims.iter().map(Vec::len).collect::<Vec<_>>()
    );
    Ok(())
}
