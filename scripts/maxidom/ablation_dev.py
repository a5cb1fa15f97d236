"""Rich-feature group ablation on the MaxiDOM dev protocol, offline (numpy mirror of the service's model).

    python3 scripts/maxidom/ablation_dev.py [--data ../shared/data/mouse-dev]

Same data, converter, splits and test payloads as `eval_dev.py` (it imports them), but the model runs here, in numpy:
per profile a standardised k-NN distance (median / IQR scaling, mean distance to the k = √n/2 nearest enrolment
payloads) calibrated to a conformal p-value with leave-one-out distances, as `crates/biometrics/src/model.rs` does;
input: sign·ln(1+|x|) of contract features 1–10 plus the chosen rich groups. It mirrors the Rust extraction for the
shipped groups (angles, click timing) and also computes the groups that were measured and not shipped (speed
quantiles, speed histogram, jerk, stroke shape, direction histogram, screen position, sampling interval), so the
table says what each one is worth. All enrolment payloads, no growth schedule: numbers differ slightly from
`eval_dev.py`'s, which go through the service.
"""

import argparse
import math
import os
import sys
import tempfile
from multiprocessing import Pool
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from eval_dev import load_sessions, split, summarise  # noqa: E402
from features import features as contract_features  # noqa: E402

SHIPPED = ["angle", "click"]
NOT_SHIPPED = ["speed", "speedhist", "jerk", "stroke"]
PRINCIPLE = ["dir", "pos", "sampling"]


def _q(x, qs):
    x = np.asarray(x, float)
    return [float(v) for v in np.quantile(x, qs)] if len(x) else [0.0] * len(qs)


def rich_groups(p):
    paths = [pa for pa in p["mousePaths"] if len(pa) >= 2]
    out = {}
    seg_v, turn, curv, jerk, acc = [], [], [], [], []
    s_dur, s_len, s_str, s_pk, s_vmax = [], [], [], [], []
    dirs = np.zeros(8)
    xs, ys, dts = [], [], []
    for pa in paths:
        xy = np.array([[q["x"], q["y"]] for q in pa], dtype=float)
        t = np.array([q["t"] for q in pa], dtype=float)
        xs.append(xy[:, 0])
        ys.append(xy[:, 1])
        d = np.diff(xy, axis=0)
        seg = np.hypot(d[:, 0], d[:, 1])
        dt = np.diff(t)
        dts.append(dt)
        ok = (dt > 0) & (dt < 2000)
        v = np.where(ok, seg / np.where(ok, dt / 1000.0, 1), np.nan)
        vk = v[ok]
        seg_v.extend(vk.tolist())
        mv = seg > 0
        ang = np.arctan2(d[mv, 1], d[mv, 0])
        np.add.at(dirs, ((ang + math.pi) / (2 * math.pi) * 8).astype(int) % 8, seg[mv])
        if mv.sum() >= 2:
            da = np.abs((np.diff(ang) + math.pi) % (2 * math.pi) - math.pi)
            turn.extend(da.tolist())
            lm = seg[mv]
            curv.extend(np.log1p(da / np.maximum((lm[1:] + lm[:-1]) / 2, 1.0) * 100).tolist())
        tk = t[1:][ok]
        if len(vk) >= 2:
            a = np.diff(vk) / (np.diff(tk).clip(min=1) / 1000.0)
            acc.extend(a.tolist())
            if len(a) >= 2:
                jerk.extend(np.abs(np.diff(a) / (np.diff(tk)[1:].clip(min=1) / 1000.0)).tolist())
        length, span = seg.sum(), t[-1] - t[0]
        if length > 0 and span > 0:
            s_dur.append(span)
            s_len.append(length)
            s_str.append(np.hypot(*(xy[-1] - xy[0])) / length)
            if len(vk):
                k = int(np.nanargmax(np.where(ok, v, -1)))
                s_pk.append((t[k + 1] - t[0]) / span)
                s_vmax.append(float(np.nanmax(vk)))
    lv = np.log1p(np.array(seg_v)) if seg_v else np.array([])
    out["speed"] = _q(lv, [0.1, 0.25, 0.5, 0.75, 0.9])
    edges = np.log1p(np.array([50, 150, 400, 1000, 2500]))
    out["speedhist"] = ((np.histogram(lv, bins=np.r_[-1, edges, 99])[0] / len(lv)).tolist()
                        if len(lv) else [0.0] * 6)
    out["dir"] = (dirs / dirs.sum()).tolist() if dirs.sum() > 0 else [0.0] * 8
    tn = np.array(turn)
    out["angle"] = ([float(tn.mean()), float(tn.std()), float((tn > math.pi / 2).mean())] if len(tn) else [0.0] * 3) \
        + _q(curv, [0.5, 0.9])
    out["turnq"] = _q(tn, [0.25, 0.5, 0.75])
    out["jerk"] = _q(np.log1p(np.abs(acc)), [0.5, 0.9]) + _q(np.log1p(jerk), [0.5, 0.9])
    out["stroke"] = (_q(np.log1p(s_dur), [0.5]) + _q(np.log1p(s_len), [0.25, 0.5, 0.75]) + _q(s_str, [0.25, 0.5])
                     + [float(np.mean(s_pk)) if s_pk else 0.0] + _q(np.log1p(s_vmax), [0.5]))
    ends = sorted(pa[-1]["t"] for pa in paths)
    starts = sorted(pa[0]["t"] for pa in paths)
    pre, post, cd = [], [], []
    for c in p["clicks"]:
        if 0 < c["duration"] < 1000:
            cd.append(c["duration"])
        e = [x for x in ends if x <= c["t"]]
        if e and c["t"] - e[-1] < 5000:
            pre.append(math.log1p(c["t"] - e[-1]))
        up = c["t"] + max(c["duration"], 0)
        s = [x for x in starts if x >= up]
        if s and s[0] - up < 5000:
            post.append(math.log1p(s[0] - up))
    out["click"] = _q(pre, [0.5]) + _q(post, [0.5]) + _q(cd, [0.5]) + [float(np.std(cd)) if len(cd) > 1 else 0.0] \
        + [len(p["clicks"]) / max(len(paths), 1)]
    if xs:
        x, y = np.concatenate(xs), np.concatenate(ys)
        out["pos"] = [float(np.median(x)), float(np.median(y)), float(np.std(x)), float(np.std(y))]
    else:
        out["pos"] = [0.0] * 4
    alld = np.concatenate(dts) if dts else np.array([])
    out["sampling"] = [float(np.median(alld[alld > 0])) if (alld > 0).any() else 0.0]
    return {k: [x if math.isfinite(x) else 0.0 for x in v] for k, v in out.items()}


def one(p):
    return contract_features(p), rich_groups(p), sum(len(x) for x in p["mousePaths"])


def knn_scores(train, tests):
    med = np.median(train, 0)
    iqr = np.quantile(train, 0.75, 0) - np.quantile(train, 0.25, 0)
    sd = train.std(0)
    scale = np.where(iqr > 1e-9, iqr / 1.349, np.where(sd > 1e-9, sd, 1.0))
    z = (train - med) / scale
    n = len(z)
    k = int(min(10, max(1, round(math.sqrt(n) / 2))))

    def dist(x):
        zx = (x - med) / scale
        d = np.sqrt(((zx[:, None, :] - z[None, :, :]) ** 2).sum(-1))
        return d

    d = dist(train)
    np.fill_diagonal(d, np.inf)
    loo = np.sort(np.sort(d, 1)[:, :k].mean(1))
    lmax = math.log(max(loo[-1], 1e-12))
    top = np.log(np.maximum(loo[int(n * 0.8):], 1e-12))
    tail = max(float(np.mean(top - top[0])), 1e-3) if len(top) > 1 else 0.1
    out = []
    for x in tests:
        dx = np.sort(dist(x), 1)[:, :k].mean(1)
        p = (n - np.searchsorted(loo, dx, "left") + 1) / (n + 1)
        over = np.log(np.maximum(dx, 1e-12)) > lmax
        p = np.where(over, np.exp(-(np.log(np.maximum(dx, 1e-12)) - lmax) / tail) / (n + 1), p)
        out.append(p)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/mouse-dev")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "maxidom-dev-payloads"))
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "training_files").is_dir():
        raise SystemExit(f"{data}/training_files not found (run from the repository root, or pass --data)")
    splits = {u: split(s) for u, s in load_sessions(data, Path(args.cache), set()).items()}
    with Pool(2) as pool:
        feats = {}
        for u, (train, test) in splits.items():
            feats[u] = (pool.map(one, train, chunksize=16),
                        [r for _, ps in test for r in pool.map(one, ps, chunksize=16)])

    def vec(r, groups, base=True):
        v = [math.copysign(math.log1p(abs(x)), x) for x in r[0][:10]] if base else []
        for g in groups:
            v += r[1][g]
        return v

    def run(groups, base=True):
        per_user = {}
        for u in splits:
            train = np.array([vec(r, groups, base) for r in feats[u][0] if r[2] >= 30 and r[0][0] > 0])
            gen = np.array([vec(r, groups, base) for r in feats[u][1] if r[2] >= 30])
            imp = np.array([vec(r, groups, base) for v in splits if v != u for r in feats[v][1] if r[2] >= 30])
            sg, si = knn_scores(train, [gen, imp])
            per_user[u] = (sg.tolist(), si.tolist())
        return summarise(per_user)

    def show(name, groups, base=True):
        m = run(groups, base)
        p = m["pooled"]
        print(f"| {name} | {p['auc']:.3f} | {p['eer']:.3f} | {p['frr_at_1far']:.3f} | {m['mean_user_auc']:.3f} |",
              flush=True)

    print("| mouse input | pooled AUC | EER | FRR@1%FAR | mean per-user AUC |")
    print("|---|---|---|---|---|")
    show("shipped: ln features 1-10 + angles + click timing", SHIPPED)
    show("ln features 1-10 only", [])
    for g in SHIPPED:
        show(f"shipped without {g}", [x for x in SHIPPED if x != g])
    for g in NOT_SHIPPED + PRINCIPLE:
        show(f"shipped + {g}", SHIPPED + [g])
    show("shipped + all four not-shipped groups", SHIPPED + NOT_SHIPPED)
    show("angles + click timing without features 1-10", SHIPPED, base=False)


if __name__ == "__main__":
    main()
