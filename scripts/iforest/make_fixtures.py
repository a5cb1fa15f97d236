#!/usr/bin/env python3
"""Generate the scikit-learn reference fixtures for crates/iforest.

Run once (outputs are committed, so the Rust tests never need Python):

    pip install -r scripts/iforest/requirements.txt
    python3 scripts/iforest/make_fixtures.py

Writes crates/iforest/tests/fixtures/:
  <name>.csv         data sets, header x0..x{d-1},label (label 1 = planted outlier)
  sklearn_trees.json one small scikit-learn forest exported tree by tree, with probe rows
                     (float32-exact) and its score_samples / decision_function, to check
                     that identical trees score identically
  sklearn.json       per data set and per scikit-learn seed: ROC AUC, mean score, offsets and
                     flagged fractions for contamination fractions, plus the edge cases and
                     numpy/scikit-learn reference values for percentile and c(n).

The Rust side fits on the whole data set (outliers included, the unsupervised setting) and
scores the same rows, exactly as done here.
"""
import json
import pathlib

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length
from sklearn.metrics import roc_auc_score

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "iforest" / "tests" / "fixtures"
SEEDS = list(range(10))
CONTAMINATIONS = [0.05, 0.1]


def blobs(rng):
    centres = np.array([[-4.0, -4.0], [0.0, 3.0], [4.0, -2.0]])
    inl = np.concatenate([c + rng.normal(0, 0.7, size=(160, 2)) for c in centres])
    out = rng.uniform(-9, 9, size=(200, 2))
    dist = np.min(np.linalg.norm(out[:, None, :] - centres[None], axis=2), axis=1)
    out = out[dist > 2.2][:24]
    return inl, out


def heavy(rng):
    inl = rng.standard_t(df=2.5, size=(480, 4))
    out = rng.uniform(2.5, 5, size=(20, 4)) * rng.choice([-1.0, 1.0], size=(20, 4))
    return inl, out


def highdim(rng):
    inl = rng.normal(0, 1, size=(400, 40))
    out = rng.normal(0, 1, size=(20, 40))
    for row in out:
        dims = rng.choice(40, size=6, replace=False)
        row[dims] += rng.choice([-2.5, 2.5], size=6)
    return inl, out


def line(rng):
    inl = rng.normal(0, 1, size=(300, 1))
    out = rng.uniform(2.5, 5, size=(15, 1)) * rng.choice([-1.0, 1.0], size=(15, 1))
    return inl, out


def blobs_const(rng):
    inl, out = blobs(rng)
    add = lambda a: np.hstack([np.full((len(a), 1), 3.0), a, np.full((len(a), 1), -1.0)])
    return add(inl), add(out)


DATASETS = {
    "blobs": blobs,
    "heavy": heavy,
    "highdim": highdim,
    "line": line,
    "blobs_const": blobs_const,
}


def write_csv(path, x, y):
    d = x.shape[1]
    with open(path, "w") as f:
        f.write(",".join([f"x{i}" for i in range(d)] + ["label"]) + "\n")
        for row, label in zip(x, y):
            f.write(",".join(f"{v:.9g}" for v in row) + f",{int(label)}\n")


def read_back(path):
    # Use exactly the values the Rust side will parse.
    a = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return a[:, :-1], a[:, -1]


def export_trees():
    """A forest with feature subsets and a contamination offset, exported array by array."""
    x, _ = read_back(OUT / "heavy.csv")
    # scikit-learn compares float32(x) <= threshold: use float32-exact rows so both sides see
    # the same values.
    x = x.astype(np.float32).astype(np.float64)
    m = IsolationForest(n_estimators=10, max_samples=64, max_features=0.5, contamination=0.1,
                        random_state=3).fit(x)
    trees = []
    for est, feats in zip(m.estimators_, m.estimators_features_):
        t = est.tree_
        trees.append({
            "children_left": t.children_left.tolist(),
            "children_right": t.children_right.tolist(),
            "feature": t.feature.tolist(),
            "threshold": t.threshold.tolist(),
            "n_node_samples": t.n_node_samples.tolist(),
            "features": [int(f) for f in feats],
        })
    far = np.array([[9.0, -9.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0], [-30.0, 2.5, 7.25, -1.0]])
    probe = np.vstack([x[:120], far])
    out = {
        "n_features": int(x.shape[1]),
        "max_samples": int(m.max_samples_),
        "offset": float(m.offset_),
        "trees": trees,
        "probe": probe.tolist(),
        "score_samples": m.score_samples(probe).tolist(),
        "decision_function": m.decision_function(probe).tolist(),
    }
    with open(OUT / "sklearn_trees.json", "w") as f:
        json.dump(out, f)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    ref = {
        "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__},
        "seeds": SEEDS,
        "datasets": {},
    }
    for i, (name, make) in enumerate(DATASETS.items()):
        rng = np.random.default_rng(1000 + i)
        inl, out = make(rng)
        x = np.vstack([inl, out])
        y = np.concatenate([np.zeros(len(inl)), np.ones(len(out))])
        perm = rng.permutation(len(x))
        path = OUT / f"{name}.csv"
        write_csv(path, x[perm], y[perm])
        x, y = read_back(path)
        entry = {"n": int(x.shape[0]), "d": int(x.shape[1]), "auc": [], "mean_score": [],
                 "offset_auto": [], "contamination": {str(c): {"offset": [], "flagged": []} for c in CONTAMINATIONS}}
        for seed in SEEDS:
            m = IsolationForest(n_estimators=100, random_state=seed).fit(x)
            s = m.score_samples(x)
            entry["auc"].append(float(roc_auc_score(y, -s)))
            entry["mean_score"].append(float(s.mean()))
            entry["offset_auto"].append(float(m.offset_))
            for c in CONTAMINATIONS:
                mc = IsolationForest(n_estimators=100, contamination=c, random_state=seed).fit(x)
                flagged = float(np.mean(mc.predict(x) == -1))
                entry["contamination"][str(c)]["offset"].append(float(mc.offset_))
                entry["contamination"][str(c)]["flagged"].append(flagged)
        ref["datasets"][name] = entry
        print(name, x.shape, "auc", min(entry["auc"]), max(entry["auc"]),
              "mean", np.mean(entry["mean_score"]))

    # Edge cases.
    one = IsolationForest(random_state=0).fit(np.array([[1.0, 2.0]]))
    probe = np.array([[1.0, 2.0], [100.0, -3.0]])
    const = IsolationForest(random_state=0).fit(np.full((50, 2), 4.0))
    ref["edge"] = {
        "single_row": {"train": [[1.0, 2.0]], "probe": probe.tolist(),
                        "scores": one.score_samples(probe).tolist(), "offset": float(one.offset_)},
        "constant": {"probe": [[4.0, 4.0], [-5.0, 9.0]],
                      "scores": const.score_samples(np.array([[4.0, 4.0], [-5.0, 9.0]])).tolist()},
    }

    # numpy's percentile (linear) and scikit-learn's c(n), compared exactly.
    prng = np.random.default_rng(7)
    pct = []
    for n in [1, 2, 3, 7, 100, 513]:
        v = prng.normal(size=n) * 10 ** prng.integers(-3, 4)
        qs = [0.0, 0.5, 1.0, 5.0, 10.0, 25.0, 33.3, 50.0, 66.7, 90.0, 99.0, 100.0]
        pct.append({"values": v.tolist(), "q": qs, "expected": [float(np.percentile(v, q)) for q in qs]})
    ref["percentile"] = pct
    ns = [0, 1, 2, 3, 4, 10, 100, 255, 256, 1000, 100000]
    ref["average_path_length"] = {"n": ns, "c": _average_path_length(np.array(ns)).tolist()}

    with open(OUT / "sklearn.json", "w") as f:
        json.dump(ref, f, indent=1)
    export_trees()
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"fixtures: {total / 1024:.0f} KiB in {OUT}")


if __name__ == "__main__":
    main()
