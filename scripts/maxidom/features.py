"""Independent Python implementation of the 15 MaxiDOM features, written from spec/maxidom.md.

It exists to cross-check the Rust extractor: `python3 features.py fixtures` reads
fixtures/payloads.json and writes fixtures/python_features.json, which the Rust test
`crates/biometrics/tests/python_parity.rs` compares against (so the tests never need Python).
"""

import json
import math
import sys
from pathlib import Path

import numpy as np

DIGRAPHS = {"th", "he", "in", "er", "an", "re", "on", "at"}


def mean(xs):
    return float(np.mean(xs)) if len(xs) else 0.0


def std(xs):
    return float(np.std(xs)) if len(xs) >= 2 else 0.0


def clean(x):
    return x if math.isfinite(x) else 0.0


def features(p):
    keys = p["keyEvents"]
    clicks = p["clicks"]
    paths = [path for path in p["mousePaths"] if len(path) >= 2]

    # Duration: the events' own span plus at most one idle close (5 s) at each end; a declared start/end outside
    # [first - 5 s, first] / [last, last + 5 s] is clamped to it (the extension's end is on another clock).
    times = [k["downTime"] for k in keys] + [k["upTime"] for k in keys]
    times += [pt["t"] for path in p["mousePaths"] for pt in path] + [c["t"] for c in clicks]
    times = [t for t in times if math.isfinite(t)]
    if times:
        lo, hi = min(times), max(times)
        s0, e0 = p["startTimestamp"], p["endTimestamp"]
        start = min(max(s0, lo - 5000.0), lo) if math.isfinite(s0) else lo
        end = min(max(e0, hi), hi + 5000.0) if math.isfinite(e0) else hi
        d = end - start
    else:
        d = max(p["endTimestamp"] - p["startTimestamp"], 0.0)
    dur_s = max(d / 1000.0, 1.0)

    speeds, accels, straight, turns, strokes = [], [], [], [], []
    for path in paths:
        xy = np.array([[q["x"], q["y"]] for q in path], dtype=float)
        t = np.array([q["t"] for q in path], dtype=float)
        seg = np.diff(xy, axis=0)
        seg_len = np.hypot(seg[:, 0], seg[:, 1])
        dt = np.diff(t)
        kept = [(seg_len[i] / (dt[i] / 1000.0), dt[i]) for i in range(len(dt)) if 0 < dt[i] < 2000]
        speeds += [v for v, _ in kept]
        for (v1, _), (v2, dt2) in zip(kept, kept[1:]):
            accels.append((v2 - v1) / (dt2 / 1000.0))
        length = float(seg_len.sum())
        if length > 0:
            straight.append(float(np.hypot(*(xy[-1] - xy[0]))) / length)
            span = t[-1] - t[0]
            if span > 0:
                strokes.append(length / (span / 1000.0))
        for i in range(1, len(path) - 1):
            a, b = xy[i - 1] - xy[i], xy[i + 1] - xy[i]
            na, nb = np.hypot(*a), np.hypot(*b)
            if na == 0 or nb == 0:
                turns.append(0.0)
            else:
                c = float(np.dot(a, b) / (na * nb))
                turns.append(math.degrees(math.acos(min(1.0, max(-1.0, c)))))

    pauses = []
    for prev, nxt in zip(paths, paths[1:]):
        gap = nxt[0]["t"] - prev[-1]["t"]
        if 0 < gap < 10000:
            pauses.append(gap)

    click_d = [c["duration"] for c in clicks if 0 < c["duration"] < 1000]
    dwell = [k["upTime"] - k["downTime"] for k in keys if k["code"].startswith("Key")]
    dwell = [x for x in dwell if 0 < x < 1000]

    def letter(code):
        if len(code) == 4 and code.startswith("Key") and code[3].isascii() and code[3].isalpha():
            return code[3].lower()
        return None

    ordered = sorted(keys, key=lambda k: k["downTime"])  # Python's sort is stable
    flights = []
    for k1, k2 in zip(ordered, ordered[1:]):
        l1, l2 = letter(k1["code"]), letter(k2["code"])
        if l1 and l2 and (l1 + l2) in DIGRAPHS:
            f = k2["downTime"] - k1["downTime"]
            if 0 < f < 2000:
                flights.append(f)

    ups = [k["upTime"] for k in keys]
    latencies = []
    for path in paths:
        t0 = path[0]["t"]
        before = [u for u in ups if u < t0]
        if before:
            lat = t0 - max(before)
            if 0 < lat < 5000:
                latencies.append(lat)

    out = [
        mean(speeds), std(speeds), mean(accels), std(accels), mean(straight), mean(click_d),
        mean(pauses), len(pauses) / dur_s, mean(turns), mean(strokes), mean(dwell), mean(flights),
        std(flights), len(keys) / dur_s, mean(latencies),
    ]
    return [clean(float(x)) for x in out]


def main():
    fixtures = Path(sys.argv[1] if len(sys.argv) > 1 else "fixtures")
    payloads = json.loads((fixtures / "payloads.json").read_text())
    ours = [features(p) for p in payloads]
    (fixtures / "python_features.json").write_text(json.dumps(ours, indent=1))
    rust_file = fixtures / "rust_features.json"
    if rust_file.exists():
        rust = json.loads(rust_file.read_text())
        worst = max(
            abs(a - b) / (1 + abs(b)) for ra, rb in zip(rust, ours) for a, b in zip(ra, rb)
        )
        print(f"{len(ours)} payloads; worst relative difference vs Rust: {worst:.3e}")


if __name__ == "__main__":
    main()
