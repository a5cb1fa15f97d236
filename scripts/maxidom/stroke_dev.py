"""Stroke-level (movement-level) mouse models on the MaxiDOM chunk protocol, offline.

    python3 scripts/maxidom/stroke_dev.py [--data ../shared/data/mouse-dev] [--users]

The shipped model compares a payload's *aggregates* (means, quantiles over all its paths) with the owner's
payloads. This compares each *stroke* (one mouse path: the extension closes a path after 200 ms without a move)
with the owner's stroke population, and aggregates the per-stroke evidence per payload (many weak votes per
payload instead of one vector). Per-stroke features follow the mouse-dynamics literature on Balabit / DFL
(action-level features: duration, travelled distance, straightness, point count, speed and acceleration
statistics, time to peak speed, turn angles, curvature, largest deviation from the chord, chord direction,
action type by the click that follows: mouse move / point-click / drag).

Per profile: the owner's training strokes (the same training payloads as `offline_dev.py`: the service's growth
schedule, newest 300) subsampled to at most `--cap` reference strokes; a stroke's distance is the mean
Minkowski-p distance to its k nearest reference strokes (median / IQR scaling); a payload's statistic is the
(trimmed) mean ln-distance of its strokes; it is calibrated per profile to a conformal p-value against the
same statistic of the owner's training payloads computed with their own session block left out of the
reference. The stroke p-value is used alone or combined with the shipped payload model's p-value (Stouffer),
then runs are combined as the service does (`offline_dev.run_scores`).

Variants also tried here: the stroke distance conditional on the stroke's task (`CondModel`: among the owner's
strokes of similar length, direction and action type, how far the execution is), a local-density correction
(`*_lof`: the stroke's ln k-NN distance minus that of its neighbours), point-click strokes only, and Fisher or
Bonferroni-min instead of Stouffer for the combination with the payload model.

Result (session of 2026-12-06, evening; the payload model mirrored here at the previous calibration, chunk-last
AUC / EER 0.912 / 0.170): no stroke variant beat it pooled (strokes alone 0.70-0.83, with the payload model
0.893-0.909); per user they help some (user35 0.785 -> 0.93) and badly hurt others (user16 0.895 -> 0.54 alone).
Why: a one-class k-NN over strokes measures how *common* a stroke is, and short straight strokes are common for
everyone, so an impostor whose payloads are made of ordinary strokes looks typical; telling people apart at the
stroke level needs a background model of other people, which a one-class profile does not have.

Same data, splits, chunks and metrics as `offline_dev.py` (it imports them). Exploration only: nothing in the
service reads this.
"""

import argparse
import math
import os
import pickle
import random
import sys
import tempfile
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy.stats import norm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from eval_dev import load_sessions, metrics, split  # noqa: E402
from offline_dev import cut, knn, last_growth, load, run_scores, vec  # noqa: E402

STROKE_NAMES = ["ln_dur", "ln_len", "straight", "ln_npts", "ln_vmean", "ln_vmax", "ln_vstd", "t_peak",
                "turn_mean", "curv_med", "ln_dev", "cos_dir", "sin_dir", "ln_amax", "ln_dmax",
                "click_after", "ln_pre_click", "drag"]


def stroke_features(p, min_points=4):
    """One row per path with at least `min_points` points that moves and takes time."""
    clicks = sorted((c["t"], max(c["duration"], 0.0)) for c in p["clicks"])
    ct = np.array([c[0] for c in clicks]) if clicks else np.zeros(0)
    rows = []
    for pa in p["mousePaths"]:
        if len(pa) < min_points:
            continue
        xy = np.array([[q["x"], q["y"]] for q in pa], float)
        t = np.array([q["t"] for q in pa], float)
        d = np.diff(xy, axis=0)
        seg = np.hypot(d[:, 0], d[:, 1])
        length, span = seg.sum(), t[-1] - t[0]
        if length <= 0 or span <= 0:
            continue
        dt = np.diff(t)
        ok = dt > 0
        v = seg[ok] / (dt[ok] / 1000.0)
        tv = t[1:][ok]
        chord = xy[-1] - xy[0]
        cl = float(np.hypot(*chord))
        mv = seg > 0
        ang = np.arctan2(d[mv, 1], d[mv, 0])
        if mv.sum() >= 2:
            da = np.abs((np.diff(ang) + math.pi) % (2 * math.pi) - math.pi)
            lm = seg[mv]
            cv = np.log1p(da / np.maximum((lm[1:] + lm[:-1]) / 2, 1.0) * 100)
            turn_mean, curv_med = float(da.mean()), float(np.median(cv))
        else:
            turn_mean, curv_med = 0.0, 0.0
        if cl > 0:
            nrm = np.array([-chord[1], chord[0]]) / cl
            dev = float(np.abs((xy - xy[0]) @ nrm).max())
        else:
            dev = float(np.hypot(*(xy - xy[0]).T).max())
        if len(v) >= 2:
            a = np.diff(v) / (np.diff(tv).clip(min=1) / 1000.0)
            amax = float(np.abs(a).max())
        else:
            amax = 0.0
        if len(v):
            k = int(np.argmax(v))
            t_peak = (tv[k] - t[0]) / span
            vmean, vmax, vstd = length / (span / 1000), float(v.max()), float(v.std())
        else:
            t_peak, vmean, vmax, vstd = 0.0, 0.0, 0.0, 0.0
        # Action type: a press within 1 s after the path ends is a point-click; a press held over the path a drag.
        j = int(np.searchsorted(ct, t[-1], "left")) if len(ct) else 0
        click_after = 1.0 if j < len(ct) and ct[j] - t[-1] < 1000 else 0.0
        pre = math.log1p(ct[j] - t[-1]) if click_after else 0.0
        i = int(np.searchsorted(ct, t[0], "right")) - 1 if len(ct) else -1
        drag = 1.0 if i >= 0 and clicks[i][0] + clicks[i][1] >= t[-1] else 0.0
        rows.append([math.log1p(span), math.log1p(length), min(cl / length, 1.0), math.log1p(len(pa)),
                     math.log1p(vmean), math.log1p(vmax), math.log1p(vstd), t_peak, turn_mean, curv_med,
                     math.log1p(dev), chord[0] / cl if cl else 0.0, chord[1] / cl if cl else 0.0,
                     math.log1p(amax), math.log1p(dev / cl * 100 if cl else 0.0), click_after, pre, drag])
    a = np.array(rows, float).reshape(-1, len(STROKE_NAMES))
    return np.where(np.isfinite(a), a, 0.0).astype(np.float32)


def load_strokes(data, cache):
    path = cache / "strokes_v1.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    sessions = load_sessions(data, cache, set())
    with Pool(2) as pool:
        out = {u: [pool.map(stroke_features, ps, chunksize=16) for _, ps in ss] for u, ss in sessions.items()}
    path.write_bytes(pickle.dumps(out))
    return out


def scale_of(x):
    med = np.median(x, 0)
    iqr = np.quantile(x, 0.75, 0) - np.quantile(x, 0.25, 0)
    sd = x.std(0)
    return med, np.where(iqr > 1e-9, iqr / 1.349, np.where(sd > 1e-9, sd, 1.0))


def kdist(q, ref, k, p, mask=None, batch=512):
    """Mean Minkowski-p distance of each row of q to its k nearest rows of ref; mask[i, j] True excludes ref j."""
    out = np.empty(len(q))
    for s in range(0, len(q), batch):
        qq = q[s:s + batch]
        if p == 1:
            d = np.abs(qq[:, None, :] - ref[None, :, :]).sum(-1)
        elif p == 2:
            d = np.sqrt(((qq[:, None, :] - ref[None, :, :]) ** 2).sum(-1))
        else:
            d = (np.abs(qq[:, None, :] - ref[None, :, :]) ** p).sum(-1) ** (1 / p)
        if mask is not None:
            d = np.where(mask[s:s + batch], np.inf, d)
        kk = min(k, d.shape[1])
        out[s:s + batch] = np.partition(d, kk - 1, 1)[:, :kk].mean(1)
    return out


def aggregate(ld, how):
    if len(ld) == 0:
        return None
    if how == "mean":
        return float(ld.mean())
    if how == "trim":
        s = np.sort(ld)
        c = int(len(s) * 0.1)
        return float(s[c:len(s) - c].mean()) if len(s) - 2 * c > 0 else float(s.mean())
    if how == "median":
        return float(np.median(ld))
    raise ValueError(how)


class StrokeModel:
    def __init__(self, train_strokes, cols, cap, k, p, how, block, min_strokes):
        """train_strokes: list (per training payload, in time order) of stroke arrays."""
        self.cols, self.k, self.p, self.how, self.min = cols, k, p, how.removesuffix("_lof"), min_strokes
        self.lof = how.endswith("_lof")
        owner = np.concatenate([np.full(len(s), i) for i, s in enumerate(train_strokes)])
        allx = np.concatenate(train_strokes)[:, cols]
        self.med, self.sc = scale_of(allx)
        z = (allx - self.med) / self.sc
        # Deterministic subsample, spread evenly over time.
        idx = np.linspace(0, len(z) - 1, min(cap, len(z))).round().astype(int)
        self.ref, ref_owner = z[idx], owner[idx]
        if self.lof:
            self.refd = np.log(np.maximum(kdist(self.ref, self.ref, k, p, np.eye(len(self.ref), dtype=bool)), 1e-12))
        # Leave-block-out statistic of each training payload: its own strokes and those of its `block`
        # neighbours (same session, correlated) are not in its reference.
        stats = []
        for i, s in enumerate(train_strokes):
            if len(s) < self.min:
                continue
            mask = np.abs(ref_owner[None, :] - i) <= block
            ld = self.lds((s[:, cols] - self.med) / self.sc, np.repeat(mask, len(s), 0))
            stats.append(aggregate(ld, self.how))
        self.loo = np.sort(np.array(stats))
        n = len(self.loo)
        top = self.loo[int(n * 0.8):]
        self.tail = max(float(np.mean(top - top[0])), 1e-3) if len(top) > 1 else 0.1

    def stat(self, s):
        if len(s) < self.min:
            return None
        return aggregate(self.lds((s[:, self.cols] - self.med) / self.sc), self.how)

    def lds(self, z, mask=None):
        """ln k-NN distance of each stroke; with `lof`, minus the mean ln k-NN distance of its k nearest reference
        strokes (the owner's local density: a stroke in a crowded region must be closer)."""
        if not self.lof:
            return np.log(np.maximum(kdist(z, self.ref, self.k, self.p, mask), 1e-12))
        out = np.empty(len(z))
        for s in range(0, len(z), 512):
            d = np.abs(z[s:s + 512, None, :] - self.ref[None, :, :]).sum(-1)
            if mask is not None:
                d = np.where(mask[s:s + 512], np.inf, d)
            nb = np.argpartition(d, self.k - 1, 1)[:, :self.k]
            dk = np.take_along_axis(d, nb, 1).mean(1)
            out[s:s + 512] = np.log(np.maximum(dk, 1e-12)) - self.refd[nb].mean(1)
        return out

    def pvalue(self, t):
        if t is None:
            return None
        n = len(self.loo)
        if t > self.loo[-1]:
            return math.exp(-(t - self.loo[-1]) / self.tail) / (n + 1)
        return (n - np.searchsorted(self.loo, t, "left") + 1) / (n + 1)


def cond_dist(q, ref, what, how, kw, kh, p, mask=None, batch=512):
    """For each row of q: among its kw nearest reference rows in the `what` columns (the task: where the stroke
    goes), the mean L1 distance in the `how` columns (the execution) to the kh nearest of them."""
    out = np.empty(len(q))
    for s in range(0, len(q), batch):
        qq = q[s:s + batch]
        dw = np.abs(qq[:, None, what] - ref[None, :, what]).sum(-1)
        if mask is not None:
            dw = np.where(mask[s:s + batch], np.inf, dw)
        kk = min(kw, dw.shape[1])
        nb = np.argpartition(dw, kk - 1, 1)[:, :kk]
        rh = ref[:, how][nb]
        dh = (np.abs(qq[:, None, how] - rh) ** p).sum(-1) ** (1 / p)
        kh2 = min(kh, kk)
        out[s:s + batch] = np.partition(dh, kh2 - 1, 1)[:, :kh2].mean(1)
    return out


class CondModel(StrokeModel):
    """StrokeModel whose stroke distance is conditional on the stroke's task (`cond_dist`)."""

    def __init__(self, train_strokes, what, how, kw, kh, cap, p, agg, block, min_strokes):
        self.what, self.howc, self.kw, self.kh, self.p, self.how, self.min = what, how, kw, kh, p, agg, min_strokes
        cols = what + how
        self.cols = cols
        owner = np.concatenate([np.full(len(s), i) for i, s in enumerate(train_strokes)])
        allx = np.concatenate(train_strokes)[:, cols]
        self.med, self.sc = scale_of(allx)
        z = (allx - self.med) / self.sc
        idx = np.linspace(0, len(z) - 1, min(cap, len(z))).round().astype(int)
        self.ref, ref_owner = z[idx], owner[idx]
        self.w, self.h = list(range(len(what))), list(range(len(what), len(cols)))
        stats = []
        for i, s in enumerate(train_strokes):
            if len(s) < self.min:
                continue
            mask = np.abs(ref_owner[None, :] - i) <= block
            ld = np.log(np.maximum(cond_dist((s[:, cols] - self.med) / self.sc, self.ref, self.w, self.h, kw, kh, p,
                                             np.repeat(mask, len(s), 0)), 1e-12))
            stats.append(aggregate(ld, agg))
        self.loo = np.sort(np.array(stats))
        n = len(self.loo)
        top = self.loo[int(n * 0.8):]
        self.tail = max(float(np.mean(top - top[0])), 1e-3) if len(top) > 1 else 0.1

    def stat(self, s):
        if len(s) < self.min:
            return None
        ld = np.log(np.maximum(cond_dist((s[:, self.cols] - self.med) / self.sc, self.ref, self.w, self.h, self.kw,
                                         self.kh, self.p), 1e-12))
        return aggregate(ld, self.how)

def stouffer(a, b):
    if a is None:
        return b
    if b is None:
        return a
    z = (norm.ppf(min(max(a, 1e-300), 1 - 1e-16)) + norm.ppf(min(max(b, 1e-300), 1 - 1e-16))) / math.sqrt(2)
    return float(norm.cdf(z))


def fisher(a, b):
    if a is None:
        return b
    if b is None:
        return a
    q = max(a * b, 1e-300)
    return float(q * (1 - math.log(q)))


def bonferroni_min(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return min(1.0, 2 * min(a, b))


COMBINE = {"both": stouffer, "fisher": fisher, "min": bonferroni_min}


def evaluate(vectors, strokes, splits, chunks, cfg, combine_with_payload):
    g_pay, i_pay, g_last, i_last, per_user = [], [], [], [], {}
    for u in splits:
        tr_idx = splits[u][0]
        tr_idx = tr_idx[:last_growth(len(tr_idx))][-300:]
        tr_v = [vectors[u][si][pi] for si, pi in tr_idx]
        keep = (lambda a: a[a[:, STROKE_NAMES.index("click_after")] > 0]) if cfg and cfg.get("pc") else (lambda a: a)
        mcfg = {k: v for k, v in cfg.items() if k != "pc"} if cfg else cfg
        tr_s = [keep(strokes[u][si][pi]) for si, pi in tr_idx]
        pay = knn(np.array([vec(r, ["angle", "click", "turnq"]) for r in tr_v if r[0][0] > 0]), 0.25)
        sm = (CondModel(tr_s, **{k: v for k, v in mcfg.items() if k != "cond"}) if mcfg and mcfg.get("cond")
              else StrokeModel(tr_s, **mcfg) if mcfg else None)
        allc = [(v == u, c) for v in splits for c in chunks[v]]
        flat = [ix for _, c in allc for ix in c]
        pv = pay(np.array([vec(vectors[v][si][pi], ["angle", "click", "turnq"]) for v, si, pi in flat]))
        pos, ul = 0, ([], [])
        for gen, c in allc:
            ps = []
            for j, (v, si, pi) in enumerate(c):
                pp = float(pv[pos + j]) if vectors[v][si][pi][2] >= 30 else None
                sp = sm.pvalue(sm.stat(keep(strokes[v][si][pi]))) if sm else None
                if sm and combine_with_payload == "stroke":
                    ps.append(sp if pp is not None else None)
                elif sm and combine_with_payload in COMBINE:
                    ps.append(COMBINE[combine_with_payload](pp, sp) if pp is not None else None)
                else:
                    ps.append(pp)
            pos += len(c)
            rs = run_scores(ps)
            (g_last if gen else i_last).append(rs[-1])
            ul[0 if gen else 1].append(rs[-1])
            (g_pay if gen else i_pay).extend(x for x in ps if x is not None)
        per_user[u] = metrics(*ul)
    return {"payload": metrics(g_pay, i_pay), "chunk_last": metrics(g_last, i_last), "per_user": per_user}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/mouse-dev")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "maxidom-dev-payloads"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--users", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated variant numbers to run")
    args = ap.parse_args()
    data = Path(args.data)
    vectors = load(data, Path(args.cache))
    strokes = load_strokes(data, Path(args.cache))
    # Index payloads as (user, session, payload) so one cut serves both caches.
    splits = {}
    for u, sess in vectors.items():
        ids = [[(u, si, pi) for pi in range(len(s))] for si, s in enumerate(sess)]
        tr, te = split([(i, s) for i, s in enumerate(ids)])
        splits[u] = ([(si, pi) for _, si, pi in tr], [s for _, s in te])
    rng = random.Random(args.seed)
    chunks = {u: cut(te, rng) for u, (_, te) in splits.items()}
    def sel(*names):
        return [STROKE_NAMES.index(n) for n in names]

    all_cols = list(range(len(STROKE_NAMES)))
    no_dir = [i for i, n in enumerate(STROKE_NAMES) if n not in ("cos_dir", "sin_dir")]
    base = dict(cols=all_cols, cap=2000, k=5, p=1, how="mean", block=2, min_strokes=3)
    variants = [
        ("payload model (mirror, calibration on all rows)", None, "payload"),
        ("strokes alone, all features", base, "stroke"),
        ("strokes + payload model (Stouffer)", base, "both"),
        ("strokes alone, no direction", {**base, "cols": no_dir}, "stroke"),
        ("strokes + payload, no direction", {**base, "cols": no_dir}, "both"),
        ("strokes + payload, trimmed mean", {**base, "how": "trim"}, "both"),
        ("strokes + payload, p = 1/2", {**base, "p": 0.5}, "both"),
        ("strokes + payload, cap 500", {**base, "cap": 500}, "both"),
        ("strokes + payload, k = 10", {**base, "k": 10}, "both"),
        ("strokes alone, shape only", {**base, "cols": sel("straight", "turn_mean", "curv_med", "ln_dev", "ln_dmax",
                                                          "t_peak")}, "stroke"),
        ("strokes alone, no point count / sampling-bound", {**base, "cols": sel(*[n for n in STROKE_NAMES if n not in (
            "ln_npts", "ln_amax", "cos_dir", "sin_dir")])}, "stroke"),
        ("strokes alone, kinematics only", {**base, "cols": sel("ln_dur", "ln_len", "ln_vmean", "ln_vmax", "ln_vstd",
                                                               "t_peak")}, "stroke"),
        ("strokes alone, click only", {**base, "cols": sel("click_after", "ln_pre_click", "drag", "ln_len")}, "stroke"),
    ]
    what = sel("ln_len", "cos_dir", "sin_dir", "click_after")
    how = sel("ln_dur", "straight", "ln_vmax", "ln_vstd", "t_peak", "turn_mean", "curv_med", "ln_dev", "ln_pre_click")
    cond = dict(cond=True, what=what, how=how, kw=30, kh=5, cap=2000, p=1, agg="mean", block=2, min_strokes=3)
    variants += [
        ("conditional strokes alone", cond, "stroke"),
        ("conditional strokes + payload", cond, "both"),
        ("conditional strokes alone, what = length only", {**cond, "what": sel("ln_len")}, "stroke"),
    ]
    variants += [
        ("LOF strokes alone", {**base, "how": "mean_lof"}, "stroke"),
        ("LOF strokes + payload", {**base, "how": "mean_lof"}, "both"),
    ]
    variants += [
        ("point-click strokes alone", {**base, "pc": True, "min_strokes": 2}, "stroke"),
        ("point-click strokes + payload", {**base, "pc": True, "min_strokes": 2}, "both"),
        ("LOF strokes + payload, trimmed", {**base, "how": "trim_lof"}, "both"),
    ]
    variants += [
        ("strokes + payload, Fisher", base, "fisher"),
        ("strokes + payload, 2 min p", base, "min"),
        ("LOF strokes + payload, Fisher", {**base, "how": "mean_lof"}, "fisher"),
        ("LOF strokes + payload, 2 min p", {**base, "how": "mean_lof"}, "min"),
    ]
    only = {int(x) for x in args.only.split(",") if x}
    f = lambda m: f"{m['auc']:.3f} / {m['eer']:.3f} / {m['frr_at_1far']:.3f}"  # noqa: E731
    print("| # | variant | per payload alone AUC / EER / FRR@1%FAR | chunk (last payload) |")
    print("|---|---|---|---|")
    for n, (name, cfg, how) in enumerate(variants):
        if only and n not in only:
            continue
        r = evaluate(vectors, strokes, splits, chunks, cfg, how)
        print(f"| {n} | {name} | {f(r['payload'])} | {f(r['chunk_last'])} |", flush=True)
        if args.users:
            print("|  | per user | " + ", ".join(f"{u} {v['auc']:.3f}" for u, v in r["per_user"].items()) + " | |",
                  flush=True)


if __name__ == "__main__":
    main()
