//! Events analysed per second through `StreamState::analyse` with the default configuration (window 50, 2-D
//! embedding, H2), on one thread and on N threads with independent streams, plus where the time goes.
//!
//! `cargo run --release -p vigil-stream --example throughput -- [events_per_stream] [runs] [threads]`
//!
//! Streams are calibrated before timing, so every timed event is a full, scored analysis (including the
//! periodic model refits). Prints every run and the median.

use std::time::Instant;

use vigil_stream::bench_data::{Attack, Base, generate};
use vigil_stream::window::{embed, topology};
use vigil_stream::{Event, StreamConfig, StreamState};

fn calibrated(i: u64, events: usize) -> (StreamState, Vec<Event>) {
    let base = [Base::Noise, Base::RandomWalk, Base::Seasonal][(i % 3) as usize];
    let mut all = Vec::new();
    // Concatenate generated streams until there are enough events (re-labelled onto one stream name).
    let name = format!("s{i}");
    let mut seed = i;
    while all.len() < 200 + events {
        let s = generate(base, Some(Attack::ALL[(seed % 4) as usize]), seed);
        all.extend(s.values.iter().map(|&v| Event::new(&name, v, None)));
        seed += 7;
    }
    let cfg = StreamConfig::default();
    let mut state = StreamState::new(&name);
    for e in &all[..200] {
        let _ = state.analyse(e, &cfg);
    }
    all.drain(..200);
    all.truncate(events);
    (state, all)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let events = args.first().copied().unwrap_or(2000);
    let runs = args.get(1).copied().unwrap_or(5);
    let threads = args.get(2).copied().unwrap_or(2);
    let cfg = StreamConfig::default();

    // One thread, one stream.
    let mut single = Vec::new();
    for r in 0..runs {
        let (mut st, evs) = calibrated(r as u64, events);
        let t = Instant::now();
        let mut anomalies = 0usize;
        for e in &evs {
            if st.analyse(e, &cfg).map(|a| a.is_anomaly()).unwrap_or(false) {
                anomalies += 1;
            }
        }
        let rate = evs.len() as f64 / t.elapsed().as_secs_f64();
        println!("run {r}: 1 thread  {rate:>8.0} events/s ({anomalies} anomalies)");
        single.push(rate);
    }

    // N threads, 4 streams each, interleaved (as a server with several streams sees them).
    let mut multi = Vec::new();
    for r in 0..runs {
        let work: Vec<Vec<(StreamState, Vec<Event>)>> = (0..threads)
            .map(|t| {
                (0..4)
                    .map(|k| calibrated((t * 4 + k + r * 16) as u64, events / 4))
                    .collect()
            })
            .collect();
        let total: usize = work.iter().flatten().map(|(_, e)| e.len()).sum();
        let t = Instant::now();
        let cfg = &cfg;
        std::thread::scope(|s| {
            for mut streams in work {
                s.spawn(move || {
                    let n = streams.first().map_or(0, |x| x.1.len());
                    for i in 0..n {
                        for (st, evs) in streams.iter_mut() {
                            let _ = st.analyse(&evs[i], cfg);
                        }
                    }
                });
            }
        });
        let rate = total as f64 / t.elapsed().as_secs_f64();
        println!(
            "run {r}: {threads} threads {rate:>8.0} events/s ({} streams)",
            threads * 4
        );
        multi.push(rate);
    }

    // Where the time goes: homology alone on the same windows.
    let (_, evs) = calibrated(99, events);
    let values: Vec<f64> = evs.iter().map(|e| e.value).collect();
    let mut homology = Vec::new();
    let mut coords = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut n = 0usize;
        for w in values.windows(50) {
            embed(w, 2, 1, 10.0, 2.0, &mut coords);
            let _ = topology(&coords, &cfg);
            n += 1;
        }
        homology.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    let h1 = StreamConfig {
        max_homology_dim: 1,
        ..StreamConfig::default()
    };
    let mut homology_h1 = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut n = 0usize;
        for w in values.windows(50) {
            embed(w, 2, 1, 10.0, 2.0, &mut coords);
            let _ = topology(&coords, &h1);
            n += 1;
        }
        homology_h1.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    let s = median(single);
    println!(
        "median: 1 thread {s:.0} events/s ({:.0} µs/event) | {threads} threads {:.0} events/s | embedding+homology (H2) {:.0} µs/window, (H1 only) {:.0} µs/window",
        1e6 / s,
        median(multi),
        median(homology),
        median(homology_h1)
    );
}
