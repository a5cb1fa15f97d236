//! Prints the detection quality of the default configuration on the labelled benchmark suite.
//!
//! `cargo run --release -p vigil-stream --example detection_report [seeds]` (default 5 seeds, i.e.
//! 5 × 3 bases × (4 attacks + 1 normal) = 75 streams of 480 events).

use vigil_stream::StreamConfig;
use vigil_stream::bench_data::{evaluate, suite};

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let streams = suite(0..seeds);
    let cfg = StreamConfig::default();
    let started = std::time::Instant::now();
    let report = match evaluate(&streams, &cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("evaluation failed: {e}");
            std::process::exit(1);
        }
    };
    let events: usize = streams.iter().map(|s| s.values.len()).sum();
    println!(
        "{:<32} {:>6} {:>6} {:>9} {:>7}",
        "stream", "alarms", "true", "detected", "delay"
    );
    for o in &report.streams {
        let delay = o.delays.first().map_or("-".to_owned(), |d| d.to_string());
        println!(
            "{:<32} {:>6} {:>6} {:>5}/{:<3} {:>7}",
            o.name, o.alarms, o.true_alarms, o.detected, o.segments, delay
        );
    }
    for attack in ["Beaconing", "Burst", "LevelShift", "Oscillation"] {
        let os: Vec<_> = report
            .streams
            .iter()
            .filter(|o| o.name.contains(attack))
            .collect();
        let det: usize = os.iter().map(|o| o.detected).sum();
        let seg: usize = os.iter().map(|o| o.segments).sum();
        let mut d: Vec<f64> = os
            .iter()
            .flat_map(|o| o.delays.iter().map(|&x| x as f64))
            .collect();
        d.sort_by(f64::total_cmp);
        let med = if d.is_empty() {
            f64::NAN
        } else {
            d[d.len() / 2]
        };
        println!("{attack:<12} recall {det}/{seg}  median delay {med}");
    }
    println!(
        "streams {} events {} | precision {:.3} recall {:.3} median delay {:.1} mean delay {:.1} | false alarms on normal streams {:.2}/1000 events | {:.1}s",
        streams.len(),
        events,
        report.precision,
        report.recall,
        report.median_delay,
        report.mean_delay,
        report.normal_false_alarm_rate,
        started.elapsed().as_secs_f64()
    );
}
