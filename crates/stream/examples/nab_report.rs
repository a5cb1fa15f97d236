//! The NAB-style dev-set report of the default detector, offline (no HTTP): per category and overall, the three
//! profiles, and the alarm rate (score ≥ 0.99) on artificialNoAnomaly. The reported figures of record come through
//! the HTTP API (`scripts/stream/nab_score.py`); this is the fast loop, and gives the same scores.
//!
//! `cargo run --release -p vigil-stream --example nab_report [-- DATA_DIR] [-- key=value ...]`
//! where `key=value` overrides a detector parameter (`dim`, `k`, `memory`, `history`, `incident_events`,
//! `topology`, `shape`, `censor`, `forget_young`, `level`, `spread` as true/false, `kind` = shape|autoencoder, `combine` =
//! bonferroni|conformal) or `threshold` (anomaly_threshold), for ablations; `save=PATH` writes the per-point scores as JSON (for
//! `scripts/stream/nab_score.py --load`).

use std::path::PathBuf;

use vigil_stream::StreamConfig;
use vigil_stream::nab::{self, REWARD_LOW_FN, REWARD_LOW_FP, STANDARD};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/streams-dev");
    let mut cfg = StreamConfig::default();
    let mut save: Option<PathBuf> = None;
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some((k, v)) => {
                let d = &mut cfg.detector;
                match k {
                    "dim" => d.dim = v.parse()?,
                    "k" => d.k = v.parse()?,
                    "memory" => d.memory = v.parse()?,
                    "history" => d.history = v.parse()?,
                    "incident_events" => d.incident_events = v.parse()?,
                    "topology" => d.topology = v.parse()?,
                    "shape" => d.shape = v.parse()?,
                    "censor" => d.censor = v.parse()?,
                    "forget_young" => d.forget_young = v.parse()?,
                    "level" => d.level = v.parse()?,
                    "spread" => d.spread = v.parse()?,
                    "combine" => {
                        d.combine = serde_json::from_value(serde_json::Value::String(v.into()))?
                    }
                    "kind" => d.kind = serde_json::from_value(serde_json::Value::String(v.into()))?,
                    "save" => save = Some(PathBuf::from(v)),
                    "threshold" => cfg.anomaly_threshold = v.parse()?,
                    _ => return Err(format!("unknown parameter {k}").into()),
                }
            }
            None => dir = PathBuf::from(arg),
        }
    }
    let corpus = nab::load_corpus(&dir)?;
    let scores: Vec<Vec<f64>> = corpus
        .iter()
        .map(|s| nab::replay(s, &cfg))
        .collect::<Result<_, _>>()?;
    if let Some(path) = save {
        let map: serde_json::Map<String, serde_json::Value> = corpus
            .iter()
            .zip(&scores)
            .map(|(s, sc)| (s.name.clone(), serde_json::json!(sc)))
            .collect();
        std::fs::write(path, serde_json::to_vec(&map)?)?;
    }
    let mut cats: Vec<String> = corpus.iter().map(|s| s.category().to_owned()).collect();
    cats.dedup();
    cats.push("overall".into());
    println!("| profile | {} | threshold |", cats.join(" | "));
    println!("|{}", "---|".repeat(cats.len() + 2));
    for (name, w) in [
        ("standard", STANDARD),
        ("reward_low_FP", REWARD_LOW_FP),
        ("reward_low_FN", REWARD_LOW_FN),
    ] {
        let r = nab::score(&corpus, &scores, w);
        let cells: Vec<String> = cats
            .iter()
            .map(|c| match r.normalised.get(c) {
                Some(v) => format!("{v:.1}"),
                None => format!("raw {:.2}", r.raw.get(c).copied().unwrap_or(0.0)),
            })
            .collect();
        println!("| {name} | {} | {:.6} |", cells.join(" | "), r.threshold);
    }
    let (mut hi, mut n) = (0usize, 0usize);
    for (s, sc) in corpus.iter().zip(&scores) {
        if s.category() == "artificialNoAnomaly" {
            hi += sc.iter().filter(|&&x| x >= 0.99).count();
            n += sc.len();
        }
    }
    println!(
        "alarm rate (score >= 0.99) on artificialNoAnomaly: {:.3}%",
        100.0 * hi as f64 / n.max(1) as f64
    );
    Ok(())
}
