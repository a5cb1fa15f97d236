//! `vigil iforest` on real files: quoted CSV fields (a header naming columns with commas in them) read as one
//! field each, so a file written by a spreadsheet or pandas scores exactly like the same numbers without a header.

use std::path::Path;
use std::process::Command;

fn iforest(train: &Path, score: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["iforest", "--trees", "20", "--seed", "7", "--train"])
        .arg(train)
        .arg("--score")
        .arg(score)
        .output()
        .expect("run vigil iforest")
}

#[test]
fn quoted_commas_in_the_header_are_one_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows: String = (0..40)
        .map(|i| format!("{},{}\n", i % 7, (i * 3) % 11))
        .collect();
    let quoted = dir.path().join("quoted.csv");
    std::fs::write(
        &quoted,
        format!(
            "\"bytes, in\",\"bytes, out\"\r\n{}",
            rows.replace('\n', "\r\n")
        ),
    )
    .expect("write quoted.csv");
    let plain = dir.path().join("plain.csv");
    std::fs::write(&plain, &rows).expect("write plain.csv");

    let with_header = iforest(&quoted, &quoted);
    assert!(
        with_header.status.success(),
        "{}",
        String::from_utf8_lossy(&with_header.stderr)
    );
    let without = iforest(&plain, &plain);
    assert!(without.status.success());
    let scores = String::from_utf8(with_header.stdout).expect("utf-8 scores");
    assert_eq!(scores.lines().count(), 40);
    assert!(
        scores
            .lines()
            .all(|l| l.parse::<f64>().is_ok_and(|s| s < 0.0)),
        "{scores}"
    );
    assert_eq!(scores, String::from_utf8_lossy(&without.stdout));
}

#[test]
fn a_short_row_names_its_file_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "\"a,b\",c\n1,2\n\n3\n").expect("write bad.csv");
    let out = iforest(&bad, &bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4") && err.contains("expected 2 fields, found 1"),
        "{err}"
    );
}
