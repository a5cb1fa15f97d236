//! The stream pipeline's loop: one reusable workspace computing the same point cloud `reps` times. Prints the
//! wall time per call; run it under `/usr/bin/time -f %U` for user-CPU time, which is what to compare on a
//! machine shared with other jobs (wall time then includes time the process was not running).
//!
//! `cargo run --release -p vigil-topo --example window_loop -- crates/topo/benches/data/planar_50.txt 2000 2`

use std::time::Instant;

use vigil_topo::{Barcodes, RipsParams, RipsWorkspace, io};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: window_loop FILE [REPS] [MAX_DIM]")?;
    let reps: u32 = args.next().map_or(Ok(1000), |s| s.parse())?;
    let max_dim: usize = args.next().map_or(Ok(2), |s| s.parse())?;
    let (coords, dim) = io::parse_point_cloud(&std::fs::read_to_string(path)?)?;
    let params = RipsParams {
        max_dim,
        ..RipsParams::default()
    };
    let mut ws = RipsWorkspace::new();
    let mut out = Barcodes::default();
    let start = Instant::now();
    for _ in 0..reps {
        ws.compute_into(&coords, dim, &params, &mut out)?;
    }
    let per_call = start.elapsed() / reps.max(1);
    let bars: Vec<usize> = out.dims.iter().map(Vec::len).collect();
    println!("{reps} calls, {per_call:?} wall per call, bars per dimension {bars:?}");
    Ok(())
}
