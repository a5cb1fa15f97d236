#!/usr/bin/env python3
"""Generate the expected barcodes the vigil-topo tests compare against, with the `ripser` PyPI package.

Run once (outputs are committed, tests never need Python):
    pip install -r scripts/tda/requirements.txt
    python3 scripts/tda/make_fixtures.py

Writes crates/topo/tests/fixtures/expected.json: a list of cases
    {"name", "input" (file name under the data folder) or "points" (list of rows), "format",
     "maxdim", "thresh" (null = none), "coeff", "dgms": [[[birth, death|null], ...], ...]}
and copies the shared data files (with their LICENSE) next to it as a fallback for checkouts without
shared/. Random clouds come from one seeded generator, so rerunning reproduces the same file.
"""

import json
import os
import shutil
import sys
import warnings

import numpy as np
from ripser import ripser
from scipy.spatial.distance import pdist, squareform

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.abspath(os.path.join(ROOT, "..", "shared", "data", "tda"))
OUT = os.path.join(ROOT, "crates", "topo", "tests", "fixtures")


def read_numbers(path):
    text = open(path).read().replace(",", " ")
    return [float(t) for t in text.split()]


def load(name, fmt):
    path = os.path.join(DATA, name)
    if fmt == "point-cloud":
        rows = [l.replace(",", " ").split() for l in open(path) if l.strip()]
        return np.array([[float(x) for x in r] for r in rows]), False
    if fmt == "lower-distance":
        vals = read_numbers(path)
        n = int(round((1 + (1 + 8 * len(vals)) ** 0.5) / 2))
        dm = np.zeros((n, n))
        k = 0
        for i in range(1, n):
            for j in range(i):
                dm[i, j] = dm[j, i] = vals[k]
                k += 1
        return dm, True
    rows = [l.replace(",", " ").split() for l in open(path) if l.strip()]
    dm = np.array([[float(x) for x in r] for r in rows])
    dm = np.tril(dm, -1)
    return dm + dm.T, True


def dgms_of(X, is_dm, maxdim, thresh, coeff):
    if not is_dm:
        # ripser.py's own point-cloud path uses scikit-learn's dot-product formula, which makes duplicate points
        # 1e-8 apart; exact Euclidean distances (what vigil-topo computes) keep the comparison about the engine.
        X = squareform(pdist(X)) if len(X) > 1 else np.zeros((len(X), len(X)))
        is_dm = True
    kw = dict(maxdim=maxdim, coeff=coeff, distance_matrix=is_dm)
    if thresh is not None:
        kw["thresh"] = thresh
    res = ripser(X, **kw)
    out = []
    for d in res["dgms"]:
        bars = [[float(b), None if np.isinf(e) else float(e)] for b, e in d]
        bars.sort(key=lambda x: (x[0], float("inf") if x[1] is None else x[1]))
        out.append(bars)
    return out


def main():
    warnings.filterwarnings("ignore")  # ripser.py warns about wide/square clouds; they are intended
    os.makedirs(OUT, exist_ok=True)
    cases = []
    files = [
        ("random16.lower_distance_matrix", "lower-distance", 2, None, 2),
        ("random16.lower_distance_matrix", "lower-distance", 3, None, 3),
        ("projective_plane.lower_distance_matrix", "lower-distance", 2, None, 2),
        ("projective_plane.lower_distance_matrix", "lower-distance", 2, None, 3),
        ("projective_plane.csv", "distance", 2, None, 2),
        ("projective_plane.csv", "distance", 2, None, 3),
        ("sphere_3_192.lower_distance_matrix", "lower-distance", 2, None, 2),
        ("o3_1024.txt", "point-cloud", 3, 1.8, 2),
    ]
    for name, fmt, maxdim, thresh, coeff in files:
        X, is_dm = load(name, fmt)
        print(f"{name} dim {maxdim} coeff {coeff}", file=sys.stderr)
        cases.append(dict(name=f"{name}-d{maxdim}-p{coeff}", input=name, format=fmt, maxdim=maxdim,
                          thresh=thresh, coeff=coeff, dgms=dgms_of(X, is_dm, maxdim, thresh, coeff)))
        shutil.copyfile(os.path.join(DATA, name), os.path.join(OUT, name))
    shutil.copyfile(os.path.join(DATA, "LICENSE-ripser-examples.txt"), os.path.join(OUT, "LICENSE-ripser-examples.txt"))

    rng = np.random.default_rng(20261121)
    # Random clouds of many sizes and ambient dimensions; a few with thresholds, Z/3, duplicates, lattices (ties).
    for n in [1, 2, 3, 4, 6, 9, 13, 20, 30, 45, 60, 80]:
        for amb in [1, 2, 3, 5]:
            maxdim = 3 if n <= 20 else 2
            X = rng.standard_normal((n, amb))
            if n >= 9 and amb == 2:
                X[n // 2] = X[0]  # a duplicate point
            thresh = None
            if n >= 30 and amb == 3:
                thresh = 1.0
            coeff = 3 if (n % 2 == 1 and amb == 3) else 2
            cases.append(dict(name=f"cloud-n{n}-a{amb}", points=X.tolist(), format="point-cloud", maxdim=maxdim,
                              thresh=thresh, coeff=coeff, dgms=dgms_of(X, False, maxdim, thresh, coeff)))
    # Integer lattice points: many equal distances, so tie-breaking must match exactly.
    grid = np.array([[i, j] for i in range(6) for j in range(5)], dtype=float)
    cases.append(dict(name="grid-6x5", points=grid.tolist(), format="point-cloud", maxdim=2, thresh=None, coeff=2,
                      dgms=dgms_of(grid, False, 2, None, 2)))
    cube = np.array([[i, j, k] for i in range(3) for j in range(3) for k in range(3)], dtype=float)
    cases.append(dict(name="grid-3x3x3", points=cube.tolist(), format="point-cloud", maxdim=2, thresh=None, coeff=2,
                      dgms=dgms_of(cube, False, 2, None, 2)))

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(cases, f, separators=(",", ":"))
        f.write("\n")
    print(f"{len(cases)} cases -> {OUT}/expected.json", file=sys.stderr)


if __name__ == "__main__":
    main()
