//! Prints the per-event scores of one benchmark stream (for understanding a detection or a miss).
//!
//! `cargo run --release -p vigil-stream --example trace_stream -- <Noise|RandomWalk|Seasonal>
//! <Beaconing|Burst|LevelShift|Oscillation|none> <seed> [from] [to]`

use vigil_stream::StreamConfig;
use vigil_stream::bench_data::{Attack, Base, generate};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let base = match arg(0) {
        "RandomWalk" => Base::RandomWalk,
        "Seasonal" => Base::Seasonal,
        _ => Base::Noise,
    };
    let attack = Attack::ALL.into_iter().find(|a| format!("{a:?}") == arg(1));
    let seed: u64 = arg(2).parse().unwrap_or(0);
    let from: usize = arg(3).parse().unwrap_or(0);
    let to: usize = arg(4).parse().unwrap_or(usize::MAX);
    let s = generate(base, attack, seed);
    let cfg = StreamConfig::default();
    let mut state = vigil_stream::StreamState::new(&s.name);
    for (i, e) in s.events().iter().enumerate() {
        let a = match state.analyse(e, &cfg) {
            Ok(a) => a,
            Err(err) => {
                eprintln!("event {i}: {err}");
                return;
            }
        };
        if i < from || i >= to {
            continue;
        }
        if let Some(r) = a.result() {
            println!(
                "{i:>4} v={:>7.2} betti={:>2}/{:>2}/{:>2} H={:.2} L={:>6.2} | total {:>5.1} b {:>5.1} e {:>5.1} ml {:>5.1} {} {}",
                e.value,
                r.betti_numbers.h0,
                r.betti_numbers.h1,
                r.betti_numbers.h2,
                r.topology_features.entropy,
                r.topology_features.total_lifetime,
                r.scores.total,
                r.scores.betti,
                r.scores.entropy,
                r.scores.ml,
                if r.is_anomaly { "ANOMALY" } else { "" },
                r.security_analysis
                    .threats
                    .iter()
                    .map(|t| t.technique_id.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
    }
}
