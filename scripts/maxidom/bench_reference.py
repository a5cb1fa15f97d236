"""What a Python user would run instead: scikit-learn training of both MaxiDOM models on a
300-vector profile, and numpy feature extraction on the ~42 KB load payload.

    python3 scripts/maxidom/bench_reference.py scripts/maxidom/fixtures

Prints the median of several runs, to compare with `cargo bench -p vigil-biometrics`.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest

sys.path.insert(0, str(Path(__file__).parent))
from features import features  # noqa: E402


def train_both(vectors):
    v = np.asarray(vectors)
    out = {}
    for name, rows, cols in (
        ("mouse", v[v[:, 0] > 0], slice(0, 10)),
        ("typing", v[v[:, 13] > 0], slice(10, 14)),
    ):
        x = rows[:, cols]
        if len(x) < 20:
            continue
        model = IsolationForest(n_estimators=100, contamination=0.01, random_state=42).fit(x)
        out[name] = (model, float(np.percentile(model.decision_function(x), 5)))
    return out


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main():
    fixtures = Path(sys.argv[1] if len(sys.argv) > 1 else "fixtures")
    vectors = json.loads((fixtures / "train_vectors.json").read_text())
    payload = json.loads((fixtures / "load_payload.json").read_text())
    body = (fixtures / "load_payload.json").read_bytes()
    train_both(vectors)  # warm-up (imports, caches)
    print(f"sklearn train both models, {len(vectors)} vectors: median {median_ms(lambda: train_both(vectors), 15):.2f} ms")
    print(f"numpy features, 42 KB payload: median {median_ms(lambda: features(payload), 30):.3f} ms")
    print(f"json.loads + features, 42 KB payload: median {median_ms(lambda: features(json.loads(body)), 30):.3f} ms")


if __name__ == "__main__":
    main()
