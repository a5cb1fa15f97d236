#!/usr/bin/env python3
"""Offline prototype of the value-evidence + anomaly-likelihood detector, scored with nab_score's rules.

Only for design exploration (the shipped detector is the Rust one in crates/stream); run:
    python3 scripts/stream/prototype.py [--variant NAME ...]
"""

from __future__ import annotations

import argparse
import math
import sys
import os
from collections import deque

sys.path.insert(0, os.path.dirname(__file__))
import nab_score as ns  # noqa: E402


def qtail(z):
    """Upper Gaussian tail Q(z)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


class Ew:
    __slots__ = ("n", "mean", "var")

    def __init__(self):
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def update(self, x, horizon):
        self.n += 1
        a = max(1.0 / self.n, 1.0 / horizon)
        d = x - self.mean
        self.mean += a * d
        self.var = (1 - a) * (self.var + a * d * d)


_KNN_CACHE = {}


def knn_series(values, D, M, K):
    """Shape evidence per point (None before it exists), cached per (series, D, M, K)."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view as swv

    key = (id(values), D, M, K)
    if key in _KNN_CACHE:
        return _KNN_CACHE[key]
    vals = np.asarray(values, dtype=float)
    run = Ew()
    out = []
    for t, x in enumerate(values):
        e = None
        if t >= 2 * D + K:
            sc = max(math.sqrt(run.var), 1e-9 * max(abs(run.mean), 1.0))
            cur = vals[t - D + 1 : t + 1]
            lo = max(0, t - D + 1 - M)
            hi = t - D + 1 - D
            if hi - lo >= K:
                past = swv(vals[lo : hi + D - 1], D)
                d = np.sqrt(((past - cur) ** 2).sum(axis=1)) / sc
                e = float(np.partition(d, K - 1)[:K].mean())
        out.append(e)
        run.update(x, 2000)
    _KNN_CACHE[key] = out
    return out


def detect(values, p):
    hist = p["hist"]  # horizon of the evidence distributions (points)
    short = p["short"]  # short-term average of evidence (points)
    level = Ew()  # long level of the value
    fast = Ew()  # fast level (prediction)
    err = Ew()  # prediction error scale
    comps = p["comps"]
    ev_stats = {k: Ew() for k in comps}
    ev_short = {k: deque(maxlen=short) for k in comps}
    vol = deque(maxlen=p["volw"])
    out = []
    cooldown = 0
    prev = None
    import numpy as np
    D, M, K = p["dim"], p["mem"], p["k"]
    vals = np.asarray(values, dtype=float)
    run = Ew()
    hists = {k: deque(maxlen=p["hist"]) for k in comps}
    for t, x in enumerate(values):
        ev = {}
        if "knn" in comps:
            e = knn_series(values, D, M, K)[t]
            if e is not None:
                ev["knn"] = math.log(e + p["knn_eps"]) if p["knn_log"] else e
        run.update(x, p["level_h"])
        # evidence before learning x
        if t >= 2:
            s_l = math.sqrt(level.var)
            s_l = max(s_l, 1e-6 * max(abs(level.mean), 1.0), p["floor"] * math.sqrt(err.var) if err.n else 0)
            if "level" in comps:
                ev["level"] = abs(x - level.mean) / s_l if s_l > 0 else 0.0
            if "pred" in comps:
                se = max(math.sqrt(err.var), 1e-6 * max(abs(level.mean), 1.0))
                ev["pred"] = abs(x - fast.mean) / se
            if "vol" in comps and len(vol) >= 3:
                m = sum(vol) / len(vol)
                ev["vol"] = m
        # learn
        if prev is not None:
            vol.append(abs(x - prev))
        prev = x
        if t >= 1:
            err.update(x - fast.mean, p["err_h"])
        level.update(x, p["level_h"])
        fast.n += 1
        a = max(1.0 / fast.n, p["fast_a"])
        fast.mean += a * (x - fast.mean)

        # likelihood layer
        best_p, best_k = 1.0, None
        for k, e in ev.items():
            st = ev_stats[k]
            ev_short[k].append(e)
            if p["mode"] == "conf":
                h = hists[k]
                avg = sum(ev_short[k]) / len(ev_short[k])
                if len(h) >= p["min_ev"]:
                    ge = sum(1 for v in h if v >= avg)
                    pk = (1 + ge) / (len(h) + 1)
                    if ge == 0:
                        mx = max(h)
                        sd = max(math.sqrt(st.var), 1e-9)
                        pk *= math.exp(-(avg - mx) / sd)
                    if pk < best_p:
                        best_p, best_k = pk, k
                h.append(avg if p["hist_avg"] else e)
            elif st.n >= p["min_ev"]:
                avg = sum(ev_short[k]) / len(ev_short[k])
                sd = max(math.sqrt(st.var), p["sd_floor"] * max(abs(st.mean), 1e-9), 1e-9)
                z = (avg - st.mean) / sd
                pk = qtail(z)
                if p.get("two_sided", {}).get(k):
                    pk = min(pk, 1 - pk) * 2
                if pk < best_p:
                    best_p, best_k = pk, k
            st.update(e, hist)
        pc = min(1.0, best_p * max(len(ev), 1))
        if p["mode"] == "conf":
            score = 1.0 - pc
        else:
            score = min(1.0, -math.log10(max(pc, 1e-300)) / 10.0)
        if cooldown > 0:
            cooldown -= 1
            score = min(score, p["supp_cap"]) if p["suppress"] else score
        elif (pc <= p["alarm_p"]) if p["mode"] == "conf" else (score >= p["alarm"]):
            cooldown = p["refractory"]
        out.append(score)
    return out


BASE = dict(
    hist=2000,
    short=10,
    comps=("level", "pred", "vol"),
    volw=10,
    floor=0.0,
    err_h=2000,
    level_h=2000,
    fast_a=0.5,
    min_ev=10,
    sd_floor=0.0,
    alarm=0.5,
    refractory=0,
    suppress=False,
    supp_cap=0.0,
    dim=10,
    mem=2000,
    k=3,
    knn_eps=0.01,
    knn_log=True,
    mode="gauss",
    hist_avg=True,
    alarm_p=1e-3,
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", action="append", default=[], help="key=value overrides (python literal)")
    ap.add_argument("--save")
    args = ap.parse_args()
    p = dict(BASE)
    for kv in args.set:
        k, v = kv.split("=", 1)
        p[k] = eval(v)  # noqa: S307 (a local design tool)
    corpus = ns.load_corpus(ns.DEFAULT_DATA)
    scorer = ns.Scorer(corpus)
    scores = {c[0]: detect(c[3], p) for c in corpus}
    if args.save:
        import json

        json.dump(scores, open(args.save, "w"))
    rep = scorer.report(scores)
    cats = sorted({c[1] for c in corpus})
    print(ns.fmt_table([(" ".join(args.set) or "base", rep)], cats))


if __name__ == "__main__":
    main()
