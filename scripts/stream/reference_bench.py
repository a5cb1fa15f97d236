"""Per-event cost of the Python pipeline a user would otherwise run (the reference's approach): for every
event, the window's 2-D delay embedding (window 50, delay 1), ripser up to H2, Betti numbers, entropy,
total lifetime, first H1 landscape on 100 points, and a per-stream scikit-learn IsolationForest
(contamination 0.1) scoring the window's feature vector. Same work per event as `vigil-stream`'s `push`.

    python reference_bench.py [events] [runs]

Prints events/s (median of runs) on one core.
"""

import statistics
import sys
import time

import numpy as np
from ripser import ripser
from sklearn.ensemble import IsolationForest

WINDOW = 50


def features(values, mean, scale):
    z = (np.asarray(values) - mean) / scale
    cloud = np.stack([z[:-1], z[1:]], axis=1)
    dgms = ripser(cloud, maxdim=2)["dgms"]
    lifetimes = []
    betti = []
    max_life = []
    for d in dgms:
        life = d[:, 1] - d[:, 0]
        finite = life[np.isfinite(life)]
        thr = finite.mean() + 2 * finite.std() if finite.size else 0.1
        betti.append(int(np.sum(life > thr)))
        max_life.append(float(finite.max()) if finite.size else 0.0)
        lifetimes.extend(finite.tolist())
    lifetimes = np.asarray(lifetimes)
    total = float(lifetimes.sum())
    p = lifetimes[lifetimes > 0] / total if total > 0 else np.array([])
    entropy = float(-(p * np.log(p)).sum()) if p.size else 0.0
    h1 = dgms[1] if len(dgms) > 1 else np.zeros((0, 2))
    h1 = h1[np.isfinite(h1[:, 1])]
    if h1.size:
        lo, hi = h1[:, 0].min(), h1[:, 1].max()
        span = hi - lo
        xs = np.linspace(lo - 0.1 * span, hi + 0.1 * span, 100)
        _ = np.max(np.maximum(0, np.minimum(xs[None, :] - h1[:, :1], h1[:, 1:] - xs[None, :])), axis=0)
    w = np.asarray(values)
    return [max_life[0], max_life[1], entropy, total, (w.mean() - mean) / scale, np.log(w.std() / scale + 1e-3)]


def run(n_events):
    rng = np.random.default_rng(1)
    values = (10 + rng.standard_normal(n_events + 300)).tolist()
    # Calibration: 100 full windows, then fit the stream's forest (not timed, as in the Rust bench).
    mean, scale = float(np.mean(values[:150])), float(np.std(values[:150]))
    rows = [features(values[i - WINDOW:i], mean, scale) for i in range(WINDOW, 150)]
    forest = IsolationForest(n_estimators=100, contamination=0.1, random_state=0).fit(rows)
    start = time.perf_counter()
    for i in range(300, 300 + n_events):
        row = features(values[i - WINDOW:i], mean, scale)
        forest.score_samples([row])
    return n_events / (time.perf_counter() - start)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rates = [run(n) for _ in range(runs)]
    print(f"python reference (ripser maxdim=2 + sklearn IsolationForest): "
          f"median {statistics.median(rates):.1f} events/s ({1000 / statistics.median(rates):.2f} ms/event) "
          f"over {runs} runs of {n} events: {[round(r, 1) for r in rates]}")
