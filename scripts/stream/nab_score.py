#!/usr/bin/env python3
"""NAB-style scoring of Vigil's stream detector on the labelled dev streams, through the real HTTP API.

Clean-room implementation of the published NAB rules (see ../shared/data/streams-dev/README.md):

* every series is one stream, replayed in order through ``POST /api/ingest`` (batches, shipped defaults);
  each point's ``anomaly_score`` is collected (0 while the stream is buffering);
* probation: the first 15% of each file (alarms there are ignored; ``--probation-cap 750`` applies NAB's
  cap of 15% of 5000 points as well);
* inside a window only the first alarm counts, weighted by sigma(y) = 2/(1+exp(5y)) - 1 of its relative
  position y (-1 at the window's first point, ~0 at its last), normalised so the first point earns the
  full true-positive weight; a window without an alarm costs the false-negative weight; an alarm outside
  every window costs the false-positive weight times sigma(y) where y is its distance after the preceding
  window's end relative to that window's length (before any window: the full weight);
* profiles (TP / FN / FP weights): standard 1/1/0.11, reward_low_FP 1/1/0.22, reward_low_FN 1/2/0.11;
* one threshold per profile for the whole corpus, the one that maximises the corpus score (an exact sweep
  over every distinct score); normalised 100 * (raw - null) / (perfect - null), where null never alarms
  and perfect detects every window at its first point.

Also reported: the fraction of points scored >= 0.99 on artificialNoAnomaly, and the point AUC of scores
inside vs outside windows (after probation). A rolling z-score baseline is scored in the same run, so each
report shows it beside Vigil.

Usage (a fresh server on a temp data dir, started by the script):
    python3 scripts/stream/nab_score.py --vigil target/release/vigil
against a running server:
    python3 scripts/stream/nab_score.py --url http://127.0.0.1:8123 --user admin --password '...'
baseline only, no server:
    python3 scripts/stream/nab_score.py --offline
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import http.client
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import defaultdict

PROFILES = {
    "standard": (1.0, 1.0, 0.11),
    "reward_low_FP": (1.0, 1.0, 0.22),
    "reward_low_FN": (1.0, 2.0, 0.11),
}
DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "streams-dev")


def sigma(y: float) -> float:
    """NAB's scaled sigmoid: +1 far before 0, 0 at 0, -1 far after."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def parse_ts(s: str) -> dt.datetime:
    s = s.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(s, fmt)
        except ValueError:
            pass
    raise ValueError(f"bad timestamp {s!r}")


def load_corpus(data_dir: str):
    """[(name, category, timestamps, values, windows as (first, last) index pairs)] in a stable order."""
    with open(os.path.join(data_dir, "windows.json")) as f:
        labels = json.load(f)
    corpus = []
    for name in sorted(labels):
        path = os.path.join(data_dir, name)
        ts, vals = [], []
        with open(path) as f:
            next(f)
            for line in f:
                line = line.strip()
                if not line:
                    continue
                t, v = line.rsplit(",", 1)
                ts.append(parse_ts(t))
                vals.append(float(v))
        windows = []
        for a, b in labels[name]:
            ta, tb = parse_ts(a), parse_ts(b)
            lo = bisect.bisect_left(ts, ta)
            hi = bisect.bisect_right(ts, tb) - 1
            if hi >= lo:
                windows.append((lo, hi))
        corpus.append((name, name.split("/")[0], ts, vals, windows))
    return corpus


def probation(n: int, cap: int | None) -> int:
    p = math.floor(0.15 * n)
    return min(p, cap) if cap else p


def point_weights(n: int, windows, prob: int):
    """Per point: (window index or -1, unweighted sigmoid score); points in probation are None."""
    out = [None] * n
    win_of = [-1] * n
    for w, (lo, hi) in enumerate(windows):
        for i in range(lo, hi + 1):
            win_of[i] = w
    max_tp = sigma(-1.0)
    prev = None  # (right index, width) of the preceding window
    for i in range(n):
        w = win_of[i]
        if w >= 0:
            lo, hi = windows[w]
            width = hi - lo + 1
            y = -(hi - i + 1) / width
            s = sigma(y) / max_tp
            prev = (hi, width)
        elif prev is None:
            s = -1.0
        else:
            hi, width = prev
            y = abs(i - hi) / max(width - 1, 1)
            s = sigma(y)
        if i >= prob:
            out[i] = (w, s)
    return out


class Scorer:
    """Precomputed NAB geometry of the corpus; scores any detector's per-point scores."""

    def __init__(self, corpus, prob_cap=None):
        self.corpus = corpus
        self.geo = []
        for name, cat, ts, vals, windows in corpus:
            prob = probation(len(vals), prob_cap)
            self.geo.append((name, cat, len(windows), point_weights(len(vals), windows, prob), prob))

    def sweep(self, scores_by_file, profile):
        """Best corpus threshold for a profile: (threshold, raw score per file at it)."""
        tp_w, fn_w, fp_w = PROFILES[profile]
        pts = []
        for fi, (name, cat, nwin, geo, prob) in enumerate(self.geo):
            sc = scores_by_file[name]
            for i, g in enumerate(geo):
                if g is not None:
                    pts.append((sc[i], fi, g[0], g[1]))
        pts.sort(key=lambda p: -p[0])
        # State: per file FP sum, per (file, window) best TP weight.
        fp = [0.0] * len(self.geo)
        best = {}
        null = sum(-fn_w * g[2] for g in self.geo)
        total = null
        best_total, best_thr = null, math.inf
        i = 0
        while i < len(pts):
            thr = pts[i][0]
            while i < len(pts) and pts[i][0] == thr:
                _, fi, w, s = pts[i]
                if w < 0:
                    fp[fi] += s * fp_w
                    total += s * fp_w
                else:
                    key = (fi, w)
                    old = best.get(key)
                    new = s * tp_w
                    if old is None:
                        best[key] = new
                        total += new + fn_w
                    elif new > old:
                        best[key] = new
                        total += new - old
                i += 1
            if total > best_total + 1e-12:
                best_total, best_thr = total, thr
        return best_thr, self.raw_at(scores_by_file, profile, best_thr)

    def raw_at(self, scores_by_file, profile, thr):
        tp_w, fn_w, fp_w = PROFILES[profile]
        raws = {}
        for name, cat, nwin, geo, prob in self.geo:
            sc = scores_by_file[name]
            raw = 0.0
            got = {}
            for i, g in enumerate(geo):
                if g is None or sc[i] < thr:
                    continue
                w, s = g
                if w < 0:
                    raw += s * fp_w
                elif w not in got:
                    got[w] = s * tp_w
            raw += sum(got.values()) - fn_w * (nwin - len(got))
            raws[name] = raw
        return raws

    def report(self, scores_by_file):
        """{profile: {"threshold", "categories": {cat: normalised}, "overall"}} plus diagnostics."""
        out = {}
        cats = sorted({g[1] for g in self.geo})
        for profile, (tp_w, fn_w, fp_w) in PROFILES.items():
            thr, raws = self.sweep(scores_by_file, profile)
            res = {"threshold": thr, "categories": {}}
            for cat in cats + ["overall"]:
                files = [g for g in self.geo if cat == "overall" or g[1] == cat]
                raw = sum(raws[g[0]] for g in files)
                null = sum(-fn_w * g[2] for g in files)
                perfect = sum(tp_w * g[2] for g in files)
                # A category without windows cannot be normalised: its raw score (the false-alarm cost) is shown.
                res["categories"][cat] = (
                    100.0 * (raw - null) / (perfect - null) if perfect > null else f"raw {raw:.2f}"
                )
            out[profile] = res
        # Diagnostics.
        noanom = [s for g in self.geo if g[2] == 0 for s in scores_by_file[g[0]]]
        out["alarm_rate_noanomaly_ge_0.99"] = sum(1 for s in noanom if s >= 0.99) / max(len(noanom), 1)
        inside, outside = [], []
        for name, cat, nwin, geo, prob in self.geo:
            for i, g in enumerate(geo):
                if g is not None:
                    (inside if g[0] >= 0 else outside).append(scores_by_file[name][i])
        out["point_auc"] = auc(inside, outside)
        allpts = [s for g in self.geo for s in scores_by_file[g[0]]]
        out["alarm_rate_all_ge_0.99"] = sum(1 for s in allpts if s >= 0.99) / max(len(allpts), 1)
        out["_scores"] = scores_by_file
        return out


def auc(pos, neg):
    """Mann-Whitney AUC with ties counted half."""
    if not pos or not neg:
        return float("nan")
    allv = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    rank_sum, i, n = 0.0, 0, len(allv)
    while i < n:
        j = i
        while j < n and allv[j][0] == allv[i][0]:
            j += 1
        avg = (i + j + 1) / 2.0
        rank_sum += avg * sum(1 for k in range(i, j) if allv[k][1] == 1)
        i = j
    npos = len(pos)
    return (rank_sum - npos * (npos + 1) / 2.0) / (npos * len(neg))


def exact_labels(data_dir: str):
    """{file: [(first, last)]} of exactly labelled anomalies (``labels.json``, written by gutentag_corpus.py),
    or None when the corpus has only NAB windows."""
    path = os.path.join(data_dir, "labels.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return {k: [tuple(r) for r in v] for k, v in json.load(f).items()}


def per_kind(corpus, labels, scores_by_file, prob_cap=None):
    """Per category (and overall): point AUC (exactly labelled points vs the rest, after probation) and range-F1
    at one corpus-wide threshold (the one with the best overall range-F1, as NAB picks one threshold).
    Range-F1: recall = labelled ranges whose NAB window holds an alarm (a point >= threshold); precision = alarmed
    points (after probation) inside a NAB window over all alarmed points (counting runs instead would let one
    alarm covering the whole series score precision 1)."""
    cats = sorted({c[1] for c in corpus})
    out = {}
    allv = []
    for cat in cats + ["overall"]:
        pos, neg = [], []
        for name, c, ts, vals, windows in corpus:
            if cat != "overall" and c != cat:
                continue
            prob = probation(len(vals), prob_cap)
            inside = set()
            for lo, hi in labels.get(name, []):
                inside.update(range(lo, hi + 1))
            sc = scores_by_file[name]
            for i in range(prob, len(vals)):
                (pos if i in inside else neg).append(sc[i])
                if cat == "overall":
                    allv.append(sc[i])
        out[cat] = {"point_auc": auc(pos, neg)}

    def counts(thr):
        per = {}
        for name, c, ts, vals, windows in corpus:
            prob = probation(len(vals), prob_cap)
            sc = scores_by_file[name]
            win_hit = [False] * len(windows)
            runs = good = 0
            for i in range(prob, len(vals)):
                if sc[i] >= thr:
                    runs += 1
                    for w, (lo, hi) in enumerate(windows):
                        if lo <= i <= hi:
                            good += 1
                            win_hit[w] = True
                            break
            for key in (c, "overall"):
                r = per.setdefault(key, [0, 0, 0, 0])
                r[0] += runs
                r[1] += good
                r[2] += sum(win_hit)
                r[3] += len(windows)
        return per

    def f1(r):
        runs, good, hit, n = r
        if runs == 0 or n == 0:
            return 0.0
        prec, rec = good / runs, hit / n
        return 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0

    grid = sorted(set(v for v in allv if v > 0))
    if len(grid) > 100:
        grid = [grid[int(k * (len(grid) - 1) / 99)] for k in range(100)]
    best, best_per = -1.0, None
    for thr in grid:
        per = counts(thr)
        if f1(per["overall"]) > best:
            best, best_per = f1(per["overall"]), per
    for cat in cats + ["overall"]:
        out[cat]["range_f1"] = f1(best_per[cat]) if best_per and cat in best_per else float("nan")
    return out


def rolling_z(values, n=100):
    """|x - mean| / std of the previous n points, mapped monotonically (never saturating) into [0, 1)."""
    out = []
    s = s2 = 0.0
    for i, x in enumerate(values):
        k = min(i, n)
        if k >= 2:
            m = s / k
            var = max(s2 / k - m * m, 0.0)
            sd = math.sqrt(var)
            z = abs(x - m) / sd if sd > 1e-12 else (0.0 if abs(x - m) < 1e-12 else 1e6)
            out.append(z / (z + 3.0))
        else:
            out.append(0.0)
        s += x
        s2 += x * x
        if i >= n:
            old = values[i - n]
            s -= old
            s2 -= old * old
    return out


# --- HTTP -------------------------------------------------------------------------------------------


class Client:
    def __init__(self, url: str, token: str | None = None):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port or 80
        self.token = token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)

    def request(self, method, path, body=None, form=False):
        headers = {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
                if attempt == 2:
                    raise
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None

    def login(self, user, password):
        r = self.request("POST", "/api/auth/login", {"username": user, "password": password})
        self.token = r["access_token"]


def replay(client: Client, corpus, batch: int, prefix: str):
    """Per file: list of anomaly scores (0 while buffering) and the last result's extra fields."""
    scores, seconds, events = {}, 0.0, 0
    for name, cat, ts, vals, windows in corpus:
        stream = f"{prefix}{name}"
        sc = []
        t0 = time.perf_counter()
        for lo in range(0, len(vals), batch):
            body = [
                {"stream": stream, "timestamp": ts[i].strftime("%Y-%m-%dT%H:%M:%SZ"), "value": vals[i]}
                for i in range(lo, min(lo + batch, len(vals)))
            ]
            res = client.request("POST", "/api/ingest", body)
            for r in res:
                s = r.get("anomaly_score") if isinstance(r, dict) else None
                sc.append(float(s) if isinstance(s, (int, float)) else 0.0)
        seconds += time.perf_counter() - t0
        events += len(vals)
        scores[name] = sc
        print(f"  {name}: {len(vals)} events", file=sys.stderr)
    return scores, events / seconds if seconds > 0 else float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary: str):
    data_dir = tempfile.mkdtemp(prefix="vigil-nab-")
    port = free_port()
    password = "Nab-score-pass-1!"
    env = dict(os.environ)
    env.update(
        {
            "ADMIN_EMAIL": "nab@example.com",
            "ADMIN_PASSWORD": password,
            "ADMIN_USERNAME": "nabadmin",
            "RUST_LOG": env.get("RUST_LOG", "warn"),
        }
    )
    env.pop("DATABASE_URL", None)
    log = open(os.path.join(data_dir, "server.log"), "w")
    cmd = [binary, "serve", "--port", str(port), "--data-dir", data_dir]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited; see {data_dir}/server.log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    return proc, url, "nabadmin", password, data_dir


def fmt_table(rows, cats):
    head = "| detector | profile | " + " | ".join(cats) + " | overall | threshold |"
    lines = [head, "|" + "---|" * (len(cats) + 4)]
    for det, rep in rows:
        for profile in PROFILES:
            r = rep[profile]
            cells = " | ".join(
                v if isinstance(v, str) else f"{v:.1f}" for v in (r["categories"][c] for c in cats)
            )
            lines.append(
                f"| {det} | {profile} | {cells} | {r['categories']['overall']:.1f} | {r['threshold']:.6g} |"
            )
    lines.append("")
    lines.append("| detector | alarm rate >=0.99 on series without anomalies (artificialNoAnomaly) | alarm rate >=0.99 all | point AUC |")
    lines.append("|---|---|---|---|")
    for det, rep in rows:
        lines.append(
            f"| {det} | {100 * rep['alarm_rate_noanomaly_ge_0.99']:.3f}% | "
            f"{100 * rep['alarm_rate_all_ge_0.99']:.3f}% | {rep['point_auc']:.3f} |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA, help="the streams-dev folder")
    ap.add_argument("--url", help="a running vigil server")
    ap.add_argument("--user", default=os.environ.get("VIGIL_USER", "admin"))
    ap.add_argument("--password", default=os.environ.get("VIGIL_PASSWORD"))
    ap.add_argument("--vigil", help="start this vigil binary on a free port with a temp data dir")
    ap.add_argument("--offline", action="store_true", help="baseline only, no server")
    ap.add_argument("--batch", type=int, default=500, help="events per POST /api/ingest")
    # 400 was the best of 20/50/100/400/2000 on the dev set: the baseline is shown at its strongest.
    ap.add_argument("--z-window", type=int, default=400, help="rolling z-score window (points)")
    ap.add_argument("--probation-cap", type=int, default=None, help="cap probation at this many points")
    ap.add_argument("--save", help="write the per-point scores (JSON) here")
    ap.add_argument("--load", action="append", default=[], help="score saved per-point scores (JSON) too")
    ap.add_argument("--label", default="vigil", help="name of the detector in the table")
    ap.add_argument("--json", help="write the full report (JSON) here")
    args = ap.parse_args()

    corpus = load_corpus(args.data)
    scorer = Scorer(corpus, args.probation_cap)
    rows = []
    rows.append(
        (f"rolling z-score ({args.z_window})", scorer.report({c[0]: rolling_z(c[3], args.z_window) for c in corpus}))
    )
    for path in args.load:
        with open(path) as f:
            saved = json.load(f)
        rows.append((os.path.basename(path), scorer.report(saved)))

    proc = None
    rate = None
    if not args.offline and (args.url or args.vigil):
        try:
            if args.vigil:
                proc, url, user, password, data_dir = start_server(args.vigil)
            else:
                url, user, password, data_dir = args.url, args.user, args.password, None
            client = Client(url)
            if password:
                client.login(user, password)
            prefix = f"nab-{int(time.time())}-"
            scores, rate = replay(client, corpus, args.batch, prefix)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
                shutil.rmtree(data_dir, ignore_errors=True)
        if args.save:
            with open(args.save, "w") as f:
                json.dump(scores, f)
        rows.append((args.label, scorer.report(scores)))

    cats = sorted({c[1] for c in corpus})
    print(fmt_table(rows, cats))
    labels = exact_labels(args.data)
    if labels is not None:
        kinds = [c for c in cats if any(labels.get(f[0]) for f in corpus if f[1] == c)] + ["overall"]
        print("\n| detector | measure | " + " | ".join(kinds) + " |")
        print("|" + "---|" * (len(kinds) + 2))
        for det, rep in rows:
            pk = per_kind(corpus, labels, rep["_scores"], args.probation_cap)
            rep["per_kind"] = pk
            for m in ("point_auc", "range_f1"):
                print(f"| {det} | {m} | " + " | ".join(f"{pk[k][m]:.2f}" for k in kinds) + " |")
    if rate is not None:
        print(f"\nreplay throughput (batches of {args.batch}, one stream at a time): {rate:.0f} events/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({d: {k: v for k, v in r.items() if k != "_scores"} for d, r in rows}, f, indent=1, default=str)


if __name__ == "__main__":
    main()


def per_file(scorer: Scorer, scores_by_file, thr: float, profile: str = "standard"):
    """Lines of per-file detail at a threshold: windows hit, false alarms, raw score, first alarm index."""
    raws = scorer.raw_at(scores_by_file, profile, thr)
    lines = []
    for name, cat, nwin, geo, prob in scorer.geo:
        sc = scores_by_file[name]
        hits, fps, first = set(), 0, None
        for i, g in enumerate(geo):
            if g is None or sc[i] < thr:
                continue
            if g[0] < 0:
                fps += 1
            else:
                hits.add(g[0])
            first = i if first is None else first
        lines.append(f"{name:60s} win {len(hits)}/{nwin} fp {fps:4d} raw {raws[name]:6.2f} first {first}")
    return lines
