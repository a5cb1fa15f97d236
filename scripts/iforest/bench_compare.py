#!/usr/bin/env python3
"""Time scikit-learn and isotree on the three benchmark cases of crates/iforest.

    python3 scripts/iforest/bench_compare.py [--dir /tmp/vigil-iforest-bench] [--repeats 7]
        [--criterion /work/target-iforest/criterion]

Writes the data once (numpy seed 0) to DIR/train.csv (300x10, a MaxiDOM profile) and
DIR/test.csv (100,000x10) unless they exist; the criterion bench
(`IFOREST_BENCH_DIR=DIR cargo bench -p vigil-iforest`) reads the same files. Prints the median
over --repeats runs (each run itself a median of inner loops for the microsecond cases).

With --criterion (criterion's output folder, i.e. $CARGO_TARGET_DIR/criterion), the medians of
the last `cargo bench -p vigil-iforest` run are read back and a ratio table is printed, so run
the Rust bench first and this script right after it, in the same command.

Settings mirror the Rust crate: 100 trees, psi = 256, one variable per split (isotree ndim=1),
batch scoring with 2 threads (scikit-learn n_jobs=2, isotree nthreads=2).
"""
import argparse
import json
import pathlib
import statistics
import time

import numpy as np


def write_data(d):
    d.mkdir(parents=True, exist_ok=True)
    train, test = d / "train.csv", d / "test.csv"
    if not (train.exists() and test.exists()):
        rng = np.random.default_rng(0)
        np.savetxt(train, rng.normal(size=(300, 10)), delimiter=",", fmt="%.17g")
        np.savetxt(test, rng.normal(size=(100_000, 10)) * 1.2, delimiter=",", fmt="%.17g")
    return np.loadtxt(train, delimiter=","), np.loadtxt(test, delimiter=",")


def median_time(fn, repeats, inner=1):
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append((time.perf_counter() - t0) / inner)
    return statistics.median(runs)


def fmt(s):
    return f"{s * 1e3:9.3f} ms" if s >= 1e-3 else f"{s * 1e6:9.2f} us"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/vigil-iforest-bench")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--criterion", default=None, help="criterion output folder for the ratio table")
    args = ap.parse_args()
    train, test = write_data(pathlib.Path(args.dir))
    one = np.ascontiguousarray(test[:1])
    results = {}

    from sklearn.ensemble import IsolationForest as SkIF
    results[("scikit-learn", "fit 100 trees 300x10")] = median_time(
        lambda: SkIF(n_estimators=100, random_state=0).fit(train), args.repeats, 3)
    sk = SkIF(n_estimators=100, random_state=0).fit(train)
    results[("scikit-learn", "score one vector")] = median_time(
        lambda: sk.score_samples(one), args.repeats, 50)
    sk2 = SkIF(n_estimators=100, random_state=0, n_jobs=2).fit(train)
    results[("scikit-learn", "score 100000x10, 2 threads")] = median_time(
        lambda: sk2.score_samples(test), args.repeats)

    from isotree import IsolationForest as IsoIF
    iso_kw = dict(ntrees=100, sample_size=256, ndim=1, missing_action="fail", random_seed=0)
    # One thread is isotree's fastest setting for so small a fit (thread start-up dominates).
    results[("isotree", "fit 100 trees 300x10")] = median_time(
        lambda: IsoIF(nthreads=1, **iso_kw).fit(train), args.repeats, 20)
    iso = IsoIF(nthreads=1, **iso_kw).fit(train)
    results[("isotree", "score one vector")] = median_time(
        lambda: iso.predict(one), args.repeats, 200)
    iso2 = IsoIF(nthreads=2, **iso_kw).fit(train)
    results[("isotree", "score 100000x10, 2 threads")] = median_time(
        lambda: iso2.predict(test), args.repeats)

    print(f"medians of {args.repeats} runs, data in {args.dir}")
    for (tool, case), s in results.items():
        print(f"{tool:13s} {case:30s} {fmt(s)}")
    if args.criterion:
        ratio_table(pathlib.Path(args.criterion), results)


# criterion benchmark ids (folder names) for the three cases.
CRITERION = {
    "fit 100 trees 300x10": "fit 100 trees 300x10 (2 threads)",
    "score one vector": "score one vector",
    "score 100000x10, 2 threads": "batch/score 100000x10 (2 threads)",
}


def criterion_median(root, bench_id):
    est = root / bench_id / "new" / "estimates.json"
    if not est.exists():
        return None
    return json.loads(est.read_text())["median"]["point_estimate"] * 1e-9


def ratio_table(root, results):
    print()
    print(f"{'case':30s} {'vigil-iforest':>13s} {'scikit-learn':>13s} {'isotree':>13s} {'vs sklearn':>11s} {'vs isotree':>11s}")
    for case, bench_id in CRITERION.items():
        ours = criterion_median(root, bench_id)
        sk, iso = results[("scikit-learn", case)], results[("isotree", case)]
        if ours is None:
            print(f"{case:30s} {'(no criterion result)':>13s}")
            continue
        print(f"{case:30s} {fmt(ours):>13s} {fmt(sk):>13s} {fmt(iso):>13s} {sk / ours:10.1f}x {iso / ours:10.1f}x")


if __name__ == "__main__":
    main()
