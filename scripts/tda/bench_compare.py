#!/usr/bin/env python3
"""Time ripser.py and giotto-ph (n_threads=1) on the four vigil-topo benchmark cases and print medians.

    pip install -r scripts/tda/requirements.txt
    python3 scripts/tda/bench_compare.py            # times the Python tools
    python3 scripts/tda/bench_compare.py --write    # (re)writes the generated clouds, then times
    python3 scripts/tda/bench_compare.py --memory   # peak-RSS comparison instead (builds the Rust example)

The generated clouds (one seed) live in crates/topo/benches/data/ and are read by both this script and the
criterion bench (crates/topo/benches/rips.rs), so both sides time the same inputs. Every call is timed end to
end as a user would call it (distance computation included for point clouds).
"""

import argparse
import os
import statistics
import subprocess
import sys
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


MEMORY_SNIPPET = """
import sys, warnings, numpy as np
warnings.filterwarnings("ignore")
sys.path.insert(0, {here!r})
import bench_compare as bc
from ripser import ripser
from gph import ripser_parallel
tool, case = sys.argv[1], sys.argv[2]
X, is_dm, kw = bc.memory_case(case)
if tool == "ripser.py":
    ripser(X, distance_matrix=is_dm, **kw)
elif tool == "giotto-ph":
    ripser_parallel(X, metric="precomputed" if is_dm else "euclidean", n_threads=1, **kw)
"""


def memory_case(case):
    """Inputs and parameters of a case, as the timing cases use them."""
    if case == "sphere":
        return lower_to_square(data_path("sphere_3_192.lower_distance_matrix")), True, dict(maxdim=2)
    if case == "o3":
        return np.loadtxt(data_path("o3_1024.txt")), False, dict(maxdim=3, thresh=1.8)
    name = {"planar": "planar_50.txt", "cloud": "cloud3d_100.txt"}[case]
    return np.loadtxt(os.path.join(BENCH_DATA, name)), False, dict(maxdim=2)


def peak_kb(cmd):
    """Peak resident set size (KB) of a command, from GNU time."""
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True, check=True)
    return int(out.stderr.strip().splitlines()[-1])


def memory():
    """Peak RSS of each tool on each case minus the same process doing everything but the computation."""
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "vigil-topo", "--example", "rips_case"],
                   cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    exe = os.path.join(target, "release", "examples", "rips_case")
    snippet = MEMORY_SNIPPET.format(here=os.path.dirname(os.path.abspath(__file__)))
    print(f"{'case':<10}{'vigil-topo':>14}{'ripser.py':>14}{'giotto-ph':>14}   (peak RSS above baseline, MB)")
    for case in ["sphere", "o3", "planar", "cloud"]:
        ours = peak_kb([exe, case]) - peak_kb([exe, case, "none"])
        py = [peak_kb([sys.executable, "-c", snippet, tool, case]) - peak_kb([sys.executable, "-c", snippet, "none", case])
              for tool in ["ripser.py", "giotto-ph"]]
        print(f"{case:<10}" + "".join(f"{kb / 1024:>14.1f}" for kb in [ours] + py))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="regenerate the benchmark clouds first")
    ap.add_argument("--runs", type=int, default=7, help="minimum timed runs per case")
    ap.add_argument("--memory", action="store_true", help="compare peak memory instead of time")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.write or not os.path.exists(os.path.join(BENCH_DATA, "planar_50.txt")):
        write_clouds()
    if args.memory:
        memory()
        return

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
