//! Homology of the stream pipeline's own windows, without the scoring around it: the default configuration's
//! embedding (window 50, 2-D, delay 1, so 49 points) and `topology` (H2) over every window of generated
//! streams of the three normal kinds, each with one attack (1,293 windows by default). Deterministic, so it is the case to run under
//! `valgrind --tool=callgrind` for instruction counts that the machine's load does not disturb.
//!
//! `cargo run --release -p vigil-stream --example window_homology -- [windows_per_stream] [max_dim]`

use std::time::Instant;

use vigil_stream::StreamConfig;
use vigil_stream::bench_data::{Attack, Base, generate};
use vigil_stream::stats::mean_std;
use vigil_stream::window::{embed, topology, usable_scale};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let per_stream = args.first().copied().unwrap_or(usize::MAX);
    let cfg = StreamConfig {
        max_homology_dim: args.get(1).copied().unwrap_or(2),
        ..StreamConfig::default()
    };
    let mut coords = Vec::new();
    let mut windows = 0usize;
    let mut bars = [0usize; 3];
    // FNV-1a over every bar's bits: two builds computed the same barcodes iff they print the same digest.
    let mut digest = 0xcbf2_9ce4_8422_2325_u64;
    let start = Instant::now();
    for (i, base) in [Base::Noise, Base::RandomWalk, Base::Seasonal]
        .into_iter()
        .enumerate()
    {
        let s = generate(base, Some(Attack::ALL[i]), i as u64);
        let (mean, std) = mean_std(&s.values);
        let scale = usable_scale(std, mean);
        for w in s.values.windows(cfg.window_size).take(per_stream) {
            embed(
                w,
                cfg.embedding_dim,
                cfg.embedding_delay,
                mean,
                scale,
                &mut coords,
            );
            match topology(&coords, &cfg) {
                Ok(t) => {
                    for (b, dim) in bars.iter_mut().zip(&t.barcodes.dims) {
                        *b += dim.len();
                        for bar in dim {
                            for x in [bar.birth, bar.death] {
                                digest = (digest ^ x.to_bits()).wrapping_mul(0x100_0000_01b3);
                            }
                        }
                    }
                }
                Err(e) => eprintln!("window {windows}: {e}"),
            }
            windows += 1;
        }
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / windows.max(1) as f64;
    println!(
        "{windows} windows, {per:.1} µs wall per window, bars per dimension {bars:?}, digest {digest:016x}"
    );
}
