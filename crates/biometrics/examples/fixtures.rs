//! Writes the cross-language fixtures under `scripts/maxidom/fixtures/`:
//! `payloads.json` (synthetic sessions plus hand-made edge cases, for the Python feature parity check),
//! `train_vectors.json` (300 profiling vectors, for the training benchmark) and `load_payload.json`
//! (the ~42 KB load-test body).
//!
//! Run: `cargo run -p vigil-biometrics --example fixtures -- scripts/maxidom/fixtures`

use std::path::PathBuf;

use vigil_biometrics::synth::{Persona, SessionGenerator, Shape, load_payload};
use vigil_biometrics::{FeatureVector, Payload, extract_features};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "scripts/maxidom/fixtures".into()),
    );
    std::fs::create_dir_all(&dir)?;

    let mut payloads: Vec<Payload> = Vec::new();
    for (persona, seed) in [(Persona::alice(), 100), (Persona::bob(), 200)] {
        let mut g = SessionGenerator::new(persona, seed);
        for _ in 0..12 {
            payloads.push(g.next_payload());
        }
        payloads.push(g.payload(Shape {
            mouse_points: 0,
            key_events: 30,
        }));
        payloads.push(g.payload(Shape {
            mouse_points: 300,
            key_events: 0,
        }));
    }
    let edge: &[&str] = &[
        r#"{"startTimestamp":0,"endTimestamp":0,"keyEvents":[],"mousePaths":[],"clicks":[]}"#,
        r#"{"startTimestamp":100,"endTimestamp":50,"keyEvents":[{"code":"KeyT","downTime":10,"upTime":90},{"code":"KeyH","downTime":130,"upTime":130}],"mousePaths":[[],[{"t":5,"x":1,"y":1}],[{"t":200,"x":0,"y":0},{"t":200,"x":3,"y":4},{"t":2300,"x":3,"y":4},{"t":2310,"x":3,"y":4},{"t":2320,"x":0,"y":0}]],"clicks":[{"t":1,"duration":0},{"t":2,"duration":1500},{"t":3,"duration":42.5}]}"#,
        r#"{"startTimestamp":0,"endTimestamp":30000,"keyEvents":[{"code":"KeyA","downTime":0,"upTime":70},{"code":"KeyT","downTime":2000,"upTime":2080},{"code":"KeyR","downTime":3000,"upTime":3050},{"code":"KeyE","downTime":3000,"upTime":3040}],"mousePaths":[[{"t":4000,"x":10.5,"y":20.25},{"t":4016.7,"x":12,"y":22},{"t":4033.4,"x":12,"y":25},{"t":4050,"x":9,"y":25}],[{"t":20000,"x":0,"y":0},{"t":20010,"x":100,"y":0}],[{"t":20020,"x":0,"y":0},{"t":20030,"x":0,"y":50}]],"clicks":[]}"#,
    ];
    for e in edge {
        payloads.push(Payload::from_json(e.as_bytes())?);
    }
    std::fs::write(dir.join("payloads.json"), serde_json::to_vec(&payloads)?)?;
    let rust: Vec<FeatureVector> = payloads.iter().map(extract_features).collect();
    std::fs::write(
        dir.join("rust_features.json"),
        serde_json::to_vec_pretty(&rust)?,
    )?;

    let mut g = SessionGenerator::new(Persona::alice(), 7);
    let vectors: Vec<FeatureVector> = (0..300)
        .map(|_| extract_features(&g.next_payload()))
        .collect();
    std::fs::write(
        dir.join("train_vectors.json"),
        serde_json::to_vec(&vectors)?,
    )?;

    std::fs::write(
        dir.join("load_payload.json"),
        serde_json::to_vec(&load_payload(Persona::alice(), 1))?,
    )?;
    println!(
        "wrote {} payloads and fixtures to {}",
        payloads.len(),
        dir.display()
    );
    Ok(())
}
