#!/usr/bin/env python3
"""A labelled stream corpus that nobody on the team designed: GutenTAG (``timeeval-gutentag``) anomalies on
several base oscillations, written in the layout of ``shared/data/streams-dev`` so that the NAB scorer
(``nab_score.py --data``) and ``cargo run --release -p vigil-stream --example nab_report -- DIR`` replay it.

Fixed seed, fixed configuration (below, committed); the generated data is not committed:

    python3 -m venv /tmp/gtvenv && /tmp/gtvenv/bin/pip install -r scripts/stream/requirements.txt
    /tmp/gtvenv/bin/python scripts/stream/gutentag_corpus.py --out /tmp/gutentag-corpus
    python3 scripts/stream/nab_score.py --data /tmp/gutentag-corpus --vigil target/release/vigil

Layout: one category (folder) per anomaly kind, one series per base oscillation that GutenTAG accepts for that
kind (it refuses some pairs, e.g. a frequency change of a random walk; those are skipped and listed), plus a
``normal`` category with the same bases and no anomaly (every alarm there is false). Each series has
``LENGTH`` points with one anomaly starting at 60% of the series (after the 15% probation and ~1,800 points of
history). ``windows.json`` holds NAB-style windows (10% of the series, centred on the anomaly, as NAB widens
its labels); ``labels.json`` holds the exact anomalous index ranges, for point-AUC and range-F1 per kind.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import sys

SEED = 42
LENGTH = 3000
ANOMALY_AT = int(0.6 * LENGTH)

# Base oscillations: periodic (sine, ecg, cylinder-bell-funnel), aperiodic (random walk),
# sawtooth, trending (polynomial). Parameters are GutenTAG's; noise ("variance") is small relative to the amplitude.
BASES = {
    "sine": {"kind": "sine", "frequency": 1.0, "amplitude": 1.0, "variance": 0.05},
    "sine-slow": {"kind": "sine", "frequency": 0.25, "amplitude": 1.0, "variance": 0.1},
    "ecg": {"kind": "ecg", "frequency": 1.0, "variance": 0.05},
    "cbf": {"kind": "cylinder-bell-funnel", "avg-pattern-length": 60, "amplitude": 1.0, "variance": 0.05,
            "variance-pattern-length": 10, "variance-amplitude": 0.2},
    "random-walk": {"kind": "random-walk", "amplitude": 1.0, "smoothing": 0.01, "variance": 0.05},
    "polynomial": {"kind": "polynomial", "polynomial": [2, 2], "variance": 0.05},
    "sawtooth": {"kind": "sawtooth", "frequency": 0.5, "amplitude": 1.0, "width": 0.8, "variance": 0.05},
}

# Anomaly kinds and their parameters (length in points).
KINDS = {
    "extremum": ({"kind": "extremum", "min": False, "local": False}, 1),
    "frequency": ({"kind": "frequency", "frequency_factor": 2.0}, 100),
    "mean": ({"kind": "mean", "offset": 0.5}, 100),
    "pattern": ({"kind": "pattern", "sinusoid_k": 10.0, "cbf_pattern_factor": 2.0}, 100),
    "trend": ({"kind": "trend", "oscillation": {"kind": "polynomial", "polynomial": [0.0, 0.02]}}, 100),
    "variance": ({"kind": "variance", "variance": 0.3}, 100),
    "platform": ({"kind": "platform", "value": 0.0}, 100),
    "amplitude": ({"kind": "amplitude", "amplitude_factor": 2.0}, 100),
}


def config_for(base_name: str, kind: str | None):
    ts = {"name": f"{kind or 'normal'}--{base_name}", "length": LENGTH,
          "base-oscillations": [copy.deepcopy(BASES[base_name])], "anomalies": []}
    if kind is not None:
        params, length = KINDS[kind]
        ts["anomalies"].append({"exact-position": ANOMALY_AT, "length": length, "kinds": [copy.deepcopy(params)]})
    return ts


def generate_one(ts_cfg):
    """(values, anomalous flags) of one configured series, or None when GutenTAG refuses the combination."""
    import io
    import logging

    from gutenTAG import GutenTAG

    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger().addHandler(handler)
    try:
        gt = GutenTAG(seed=SEED)
        gt.load_config_dict({"timeseries": [ts_cfg]})
        out = gt.generate(return_timeseries=True)
    except Exception as e:  # GutenTAG raises plain exceptions for invalid parameter combinations
        print(f"  skipped {ts_cfg['name']}: {e}", file=sys.stderr)
        return None
    finally:
        logging.getLogger().removeHandler(handler)
    if not out:
        return None
    df = out[0].timeseries
    cols = [c for c in df.columns if c.startswith("value")]
    values = [float(v) for v in df[cols[0]].tolist()]
    flags = [bool(v) for v in df["is_anomaly"].tolist()]
    return values, flags


def ranges(flags):
    out, i = [], 0
    while i < len(flags):
        if flags[i]:
            j = i
            while j + 1 < len(flags) and flags[j + 1]:
                j += 1
            out.append((i, j))
            i = j + 1
        else:
            i += 1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created)")
    args = ap.parse_args()
    t0 = dt.datetime(2024, 1, 1)
    step = dt.timedelta(minutes=5)
    windows, labels, skipped = {}, {}, []
    for kind in [None] + list(KINDS):
        for base in BASES:
            cfg = config_for(base, kind)
            got = generate_one(cfg)
            cat = kind or "normal"
            name = f"{cat}/{base}.csv"
            if got is None:
                skipped.append(name)
                continue
            values, flags = got
            exact = ranges(flags)
            if kind is not None and not exact:
                # GutenTAG accepted the pair but changed nothing (e.g. it warns instead of failing).
                skipped.append(name)
                continue
            os.makedirs(os.path.join(args.out, cat), exist_ok=True)
            times = [t0 + i * step for i in range(len(values))]
            with open(os.path.join(args.out, name), "w") as f:
                f.write("timestamp,value\n")
                for t, v in zip(times, values):
                    f.write(f"{t:%Y-%m-%d %H:%M:%S},{v:.6f}\n")
            wins = []
            if exact:
                half = max(int(0.1 * len(values) / len(exact)) // 2, 1)
                for lo, hi in exact:
                    mid = (lo + hi) // 2
                    a, b = max(mid - half, 0), min(mid + half, len(values) - 1)
                    wins.append([f"{times[a]:%Y-%m-%d %H:%M:%S}", f"{times[b]:%Y-%m-%d %H:%M:%S}"])
            windows[name] = wins
            labels[name] = exact
    with open(os.path.join(args.out, "windows.json"), "w") as f:
        json.dump(windows, f, indent=1, sort_keys=True)
    with open(os.path.join(args.out, "labels.json"), "w") as f:
        json.dump(labels, f, indent=1, sort_keys=True)
    print(f"{len(windows)} series in {args.out}; skipped (GutenTAG refused or no anomaly): {', '.join(skipped)}")


if __name__ == "__main__":
    main()
