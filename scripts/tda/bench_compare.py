#!/usr/bin/env python3
"""Time ripser.py and giotto-ph (n_threads=1) on the four vigil-topo benchmark cases and print medians.

    pip install -r scripts/tda/requirements.txt
    python3 scripts/tda/bench_compare.py            # times the Python tools
    python3 scripts/tda/bench_compare.py --write    # (re)writes the generated clouds, then times

The generated clouds (one seed) live in crates/topo/benches/data/ and are read by both this script and the
criterion bench (crates/topo/benches/rips.rs), so both sides time the same inputs. Every call is timed end to
end as a user would call it (distance computation included for point clouds).
"""

import argparse
import os
import statistics
import time
import warnings

import numpy as np
from gph import ripser_parallel
from ripser import ripser

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.abspath(os.path.join(ROOT, "..", "shared", "data", "tda"))
BENCH_DATA = os.path.join(ROOT, "crates", "topo", "benches", "data")
FALLBACK = os.path.join(ROOT, "crates", "topo", "tests", "fixtures")


def write_clouds():
    os.makedirs(BENCH_DATA, exist_ok=True)
    rng = np.random.default_rng(7)
    for name, n, dim in [("planar_50.txt", 50, 2), ("cloud3d_100.txt", 100, 3)]:
        X = rng.standard_normal((n, dim))
        np.savetxt(os.path.join(BENCH_DATA, name), X, fmt="%.17g")


def data_path(name):
    p = os.path.join(DATA, name)
    return p if os.path.exists(p) else os.path.join(FALLBACK, name)


def lower_to_square(path):
    vals = np.array(open(path).read().replace(",", " ").split(), dtype=float)
    n = int(round((1 + (1 + 8 * len(vals)) ** 0.5) / 2))
    D = np.zeros((n, n))
    D[np.tril_indices(n, -1)] = vals
    return D + D.T


def median_time(fn, min_runs, min_seconds):
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 10000:
            break
    return statistics.median(times), len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="regenerate the benchmark clouds first")
    ap.add_argument("--runs", type=int, default=7, help="minimum timed runs per case")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.write or not os.path.exists(os.path.join(BENCH_DATA, "planar_50.txt")):
        write_clouds()

    sphere = lower_to_square(data_path("sphere_3_192.lower_distance_matrix"))
    o3 = np.loadtxt(data_path("o3_1024.txt"))
    planar = np.loadtxt(os.path.join(BENCH_DATA, "planar_50.txt"))
    cloud = np.loadtxt(os.path.join(BENCH_DATA, "cloud3d_100.txt"))

    cases = [
        ("sphere_3_192 dim 2", lambda: ripser(sphere, maxdim=2, distance_matrix=True),
         lambda: ripser_parallel(sphere, maxdim=2, metric="precomputed", n_threads=1), 3, 2.0),
        ("o3_1024 dim 3 thr 1.8", lambda: ripser(o3, maxdim=3, thresh=1.8),
         lambda: ripser_parallel(o3, maxdim=3, thresh=1.8, n_threads=1), 3, 2.0),
        ("planar_50 dim 2", lambda: ripser(planar, maxdim=2),
         lambda: ripser_parallel(planar, maxdim=2, n_threads=1), args.runs, 1.0),
        ("cloud3d_100 dim 2", lambda: ripser(cloud, maxdim=2),
         lambda: ripser_parallel(cloud, maxdim=2, n_threads=1), args.runs, 1.0),
    ]
    print(f"{'case':<24}{'ripser.py':>14}{'giotto-ph':>14}")
    for name, rp, gp, runs, secs in cases:
        t_rp, n_rp = median_time(rp, runs, secs)
        t_gp, n_gp = median_time(gp, runs, secs)
        print(f"{name:<24}{t_rp * 1e3:>11.3f} ms{t_gp * 1e3:>11.3f} ms   (medians of {n_rp} / {n_gp} runs)")


if __name__ == "__main__":
    main()
