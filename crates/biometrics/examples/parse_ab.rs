//! The MaxiDOM payload parsed by `Payload::from_json` (the `fastjson` reader, serde as fallback) against what it
//! would be without the fast path (serde, then the same validation), interleaved round by round so that a busy machine slows both sides alike; prints per-parse medians.
//!
//! Run: `cargo run --release -p vigil-biometrics --example parse_ab [-- ROUNDS]`

use std::hint::black_box;
use std::time::Instant;

use vigil_biometrics::synth::{Persona, load_payload};
use vigil_biometrics::{Payload, extract_features};

/// Parses per side and round: long enough to swamp timer overhead, short enough that rounds interleave finely.
const PER_ROUND: u32 = 20;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `from_json` without the fast path.
fn serde_only(body: &[u8]) -> Option<Payload> {
    let p: Payload = serde_json::from_slice(body).ok()?;
    p.validate().ok().map(|()| p)
}

fn per_parse_us(f: impl Fn()) -> f64 {
    let t = Instant::now();
    for _ in 0..PER_ROUND {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(PER_ROUND)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let body = serde_json::to_vec(&load_payload(Persona::alice(), 1)).expect("payload serialises");
    let same = Payload::from_json(&body).ok() == serde_only(&body);
    println!(
        "payload: {} bytes; both parsers agree: {same}; {rounds} rounds x {PER_ROUND} parses per side",
        body.len()
    );
    let (mut fast, mut serde, mut fast_x, mut serde_x) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        fast.push(per_parse_us(|| {
            black_box(Payload::from_json(black_box(&body)).ok());
        }));
        serde.push(per_parse_us(|| {
            black_box(serde_only(black_box(&body)));
        }));
        fast_x.push(per_parse_us(|| {
            black_box(
                Payload::from_json(black_box(&body))
                    .map(|p| extract_features(&p))
                    .ok(),
            );
        }));
        serde_x.push(per_parse_us(|| {
            black_box(serde_only(black_box(&body)).map(|p| extract_features(&p)));
        }));
    }
    let (f, s, fx, sx) = (median(fast), median(serde), median(fast_x), median(serde_x));
    println!(
        "parse only      : from_json {f:.1} us, serde {s:.1} us ({:.2}x)",
        s / f
    );
    println!(
        "parse + extract : from_json {fx:.1} us, serde {sx:.1} us ({:.2}x)",
        sx / fx
    );
}
