"""The MaxiDOM dev protocol, through the real HTTP API, with a scikit-learn baseline on the same splits.

    cargo build --release
    python3 scripts/maxidom/eval_dev.py                       # shipped defaults, feedback loop on
    python3 scripts/maxidom/eval_dev.py --no-feedback         # the same with --maxidom-feedback false
    python3 scripts/maxidom/eval_dev.py --serve-arg=--maxidom-quota-total=300 ...   # any other serve setting

Data: `../shared/data/mouse-dev/` (Balabit training sessions of 10 users; its converter cuts them into extension
payloads). Nothing is copied into the repository; converted payloads are cached in a temp dir (`--cache`).

Protocol (per user): the user's sessions in file-name order (Balabit names carry no time; within a session the
payloads are in time order). The first sessions, up to half the user's payloads, are enrolment; the rest (at least
one session) are held out. Each user gets a profile: enrolled, then every enrolment payload is POSTed to
/api/train in order (the number of payloads until `progress.is_ready` is reported), the server is left to finish its
background trainings, and then the held-out payloads of every user are POSTed to /api/score of that profile: the
owner's are genuine, everyone else's impostors. Score requests are interleaved genuine/impostor in a seeded random
order, as a deployment (or a benchmark) would see them.

The feedback loop: with it on (the shipped default) a scored session that looks typical enough joins the pool and
may, once 500 are pooled, retrain the model, so impostor payloads scored early could in principle change later
answers. `--no-feedback` starts the server with `--maxidom-feedback false` so every answer comes from the enrolment
model; the report says which was used.

Ranking: the returned `score` (a calibrated p-value in (0, 1]; higher = more like the owner) ranks the sessions;
the other fields' AUCs are printed beside it. Metrics: AUC, EER, false-reject rate at 1 % false-accept
(FRR@1%FAR), per user and pooled (all profiles' scores in one ranking, which only works when scores mean the same
for every profile).

Curve: `--curve 20,30,50,100,150` repeats the chunk protocol with profiles that received only the first N enrolment
payloads (server started with every quota at 20, the smallest model the service trains), giving accuracy versus
payloads.

Chunk protocol (`--protocol chunks`, and the first part of the default `both`): the hidden benchmark's test sessions
are short (a few payloads) and each starts its clock at 0, so the held-out sessions are cut into contiguous chunks of
1..`--chunk-max` payloads (uniform, seeded), each chunk's times shifted to start at 0 as a new session's would. Every
profile scores every chunk, a chunk's payloads in order and back to back, chunks of all profiles interleaved in a
seeded random order. Reported per payload (`score`, which combines the run so far, and `payload_score`, the payload
alone), per chunk (the last payload's `score`; the mean `score`; the mean ln `score`) and per payload by its position
in the chunk (1, 2-3, 4+), with the seed's IF scored on the same chunks (per payload; last; mean), and the calibration
of `score` on genuine chunks. The payload protocol (`--protocol payloads`) is the earlier one, kept for comparison: it
shuffles single payloads of all sessions, so it ranks by `payload_score`.

Baseline: the seed's method, scikit-learn IsolationForest (100 trees, contamination 0.01, random_state 42) on the
15 contract features (`features.py`) of the same enrolment payloads, ranked by `decision_function`, on exactly the
same splits and test payloads.
"""

import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score, roc_curve

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from features import features as contract_features  # noqa: E402


# ---------------------------------------------------------------- data


def load_sessions(data_dir, cache_dir, users_filter):
    """{user: [(session, [payload, ...]), ...]} with sessions in name order."""
    sys.path.insert(0, str(data_dir / "tools"))
    from balabit_to_payloads import payloads_from_file  # noqa: E402

    cache_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    root = data_dir / "training_files"
    for udir in sorted(root.iterdir(), key=lambda p: p.name):
        if not udir.is_dir() or (users_filter and udir.name not in users_filter):
            continue
        sessions = []
        for sfile in sorted(udir.iterdir(), key=lambda p: p.name):
            cached = cache_dir / f"{udir.name}_{sfile.name}.jsonl"
            if not cached.exists():
                tmp = cached.with_suffix(".tmp")
                with open(tmp, "w") as fh:
                    for p in payloads_from_file(str(sfile)):
                        fh.write(json.dumps(p) + "\n")
                tmp.rename(cached)
            sessions.append((sfile.name, [json.loads(line) for line in open(cached)]))
        out[udir.name] = sessions
    return out


def split(sessions):
    """Enrolment payloads (first sessions up to half the payloads) and held-out [(session, payloads)]."""
    total = sum(len(p) for _, p in sessions)
    train, test, seen = [], [], 0
    for i, (name, payloads) in enumerate(sessions):
        if seen < total / 2 and i < len(sessions) - 1:
            train += payloads
            seen += len(payloads)
        else:
            test.append((name, payloads))
    return train, test


def shift_payload(p, dt):
    """The payload with every time moved by -dt (a new session's clock)."""
    return {
        **p,
        "startTimestamp": p["startTimestamp"] - dt,
        "endTimestamp": p["endTimestamp"] - dt,
        "keyEvents": [{**k, "downTime": k["downTime"] - dt, "upTime": k["upTime"] - dt} for k in p["keyEvents"]],
        "mousePaths": [[{**pt, "t": pt["t"] - dt} for pt in path] for path in p["mousePaths"]],
        "clicks": [{**c, "t": c["t"] - dt} for c in p["clicks"]],
    }


def cut_chunks(test, rng, max_len):
    """Held-out sessions cut into contiguous test-like sessions of 1..max_len payloads (uniform), each chunk's
    clock restarting at 0 as a new session's would. [(session, chunk index, [payload, ...]), ...]"""
    out = []
    for sname, payloads in test:
        i, c = 0, 0
        while i < len(payloads):
            n = rng.randint(1, max_len)
            chunk = payloads[i:i + n]
            t0 = chunk[0]["startTimestamp"]
            out.append((sname, c, [shift_payload(p, t0) for p in chunk]))
            i += n
            c += 1
    return out


# ---------------------------------------------------------------- metrics


def metrics(genuine, impostor):
    """AUC, EER, FRR at 1 % FAR for scores where higher means genuine."""
    g, i = np.asarray(genuine, float), np.asarray(impostor, float)
    if len(g) == 0 or len(i) == 0:
        return {"auc": None, "eer": None, "frr_at_1far": None}
    y = np.r_[np.ones(len(g)), np.zeros(len(i))]
    s = np.r_[g, i]
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1 - tpr
    k = int(np.nanargmin(np.abs(fnr - fpr)))
    ok = fpr <= 0.01
    return {
        "auc": float(roc_auc_score(y, s)),
        "eer": float((fpr[k] + fnr[k]) / 2),
        "frr_at_1far": float(fnr[ok].min()) if ok.any() else 1.0,
    }


def summarise(per_user_scores):
    """per_user_scores: {user: (genuine list, impostor list)} -> pooled + per-user metrics."""
    pooled_g = [x for g, _ in per_user_scores.values() for x in g]
    pooled_i = [x for _, i in per_user_scores.values() for x in i]
    per_user = {u: metrics(g, i) for u, (g, i) in per_user_scores.items()}
    aucs = [m["auc"] for m in per_user.values() if m["auc"] is not None]
    return {
        "pooled": metrics(pooled_g, pooled_i),
        "mean_user_auc": float(np.mean(aucs)) if aucs else None,
        "per_user": per_user,
        "n_genuine": len(pooled_g),
        "n_impostor": len(pooled_i),
    }


# ---------------------------------------------------------------- server


class Server:
    def __init__(self, vigil, serve_args, log_dir):
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-eval-", dir=log_dir))
        self.log = open(self.dir / "server.log", "w")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn,vigil=info"))
        env.pop("DATABASE_URL", None)
        cmd = [vigil, "serve", "--port", "0", "--data-dir", str(self.dir / "data"), *serve_args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        for _ in range(300):
            text = (self.dir / "server.log").read_text()
            m = re.search(r"listening on http://([0-9.]+):([0-9]+)", text)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                break
            if self.proc.poll() is not None:
                raise SystemExit(f"vigil serve exited:\n{text}")
            time.sleep(0.1)
        else:
            raise SystemExit("vigil serve did not start listening")
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method, path, body=None):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                text = r.read()
                return r.status, (json.loads(text) if text else None)
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def settle(server, pid, timeout=30.0):
    """Waits until the profile has a model and no training runs (trainings are in the background)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        status, st = server.call("GET", f"/api/profile/{pid}/status")
        if status != 200:
            raise SystemExit(f"status {status}: {st}")
        key = (st["model_version"], st["training_in_progress"])
        if st["model_active"] and not st["training_in_progress"] and key == last:
            return st
        last = key
        time.sleep(0.1)
    return st


# ---------------------------------------------------------------- one run


def run_service(server, splits, n_train, order_seed, label):
    """Enrols every user on the first n_train enrolment payloads (all when None) and scores the held-out ones.
    Returns {user: {"ready_at": int|None, "rows": [(is_genuine, session_key, response), ...]}}."""
    bodies = {}
    for user, (_, test) in splits.items():
        for sname, payloads in test:
            for j, p in enumerate(payloads):
                bodies[(user, sname, j)] = json.dumps(p).encode()
    results = enrol_all(server, splits, n_train)
    # Interleaved scoring over all profiles and all held-out payloads.
    jobs = [(u, key) for u in splits for key in bodies if results[u]["ready_at"] is not None]
    random.Random(order_seed).shuffle(jobs)
    t0 = time.time()
    for n, (user, key) in enumerate(jobs):
        status, body = server.call("POST", f"/api/score/{results[user]['pid']}", bodies[key])
        if status != 200:
            raise SystemExit(f"score {status}: {body}")
        results[user]["rows"].append((key[0] == user, (key[0], key[1]), body))
        if n and n % 5000 == 0:
            print(f"  [{label}] {n}/{len(jobs)} scored ({n / (time.time() - t0):.0f}/s)", file=sys.stderr)
    return results


def enrol_all(server, splits, n_train):
    results = {}
    for user, (train, _) in splits.items():
        pid = str(uuid.uuid4())
        status, body = server.call("POST", f"/api/enroll/{pid}", {"password": "dev-protocol"})
        assert status == 200, (status, body)
        ready_at = None
        for k, p in enumerate(train[:n_train] if n_train else train, start=1):
            status, body = server.call("POST", f"/api/train/{pid}", p)
            assert status == 200, (status, body)
            if ready_at is None and body["progress"]["is_ready"]:
                ready_at = k
        st = settle(server, pid) if ready_at is not None else None
        results[user] = {"pid": pid, "ready_at": ready_at, "status": st, "rows": []}
    return results


def run_chunks(server, splits, chunks, order_seed, n_train=None, enrolled=None):
    """The test-like protocol: every profile scores every held-out chunk (the owner's genuine, the others'
    impostors); a chunk's payloads are sent in order, one after the other, as one session would be; chunks of all
    profiles are interleaved in a seeded random order. Returns {user: {..., "chunks": [(is_genuine, chunk key,
    [response, ...]), ...]}}."""
    results = enrolled or enrol_all(server, splits, n_train)
    for r in results.values():
        r["chunks"] = []
    bodies = {(u, s, c): [json.dumps(p).encode() for p in ps] for u, cs in chunks.items() for s, c, ps in cs}
    jobs = [(u, key) for u in splits for key in bodies if results[u]["ready_at"] is not None]
    random.Random(order_seed).shuffle(jobs)
    t0, n = time.time(), 0
    for user, key in jobs:
        responses = []
        for b in bodies[key]:
            status, body = server.call("POST", f"/api/score/{results[user]['pid']}", b)
            if status != 200:
                raise SystemExit(f"score {status}: {body}")
            responses.append(body)
            n += 1
            if n % 5000 == 0:
                print(f"  [chunks] {n} scored ({n / (time.time() - t0):.0f}/s)", file=sys.stderr)
        results[user]["chunks"].append((key[0] == user, key, responses))
    return results


def chunk_metrics(results, field="score"):
    """Per payload, per chunk (last payload's field; mean of ln field), and per payload by position in its chunk."""
    out = {}
    get = FIELDS[field]
    views = {
        "per_payload": lambda rs: [get(r) for r in rs],
        "chunk_last": lambda rs: [get(rs[-1])],
        "chunk_mean": lambda rs: [float(np.mean([get(r) for r in rs]))],
        "chunk_mean_ln": lambda rs: [float(np.mean([np.log(max(get(r), 1e-300)) for r in rs]))],
        "position_1": lambda rs: [get(rs[0])],
        "position_2_3": lambda rs: [get(r) for r in rs[1:3]],
        "position_4_plus": lambda rs: [get(r) for r in rs[3:]],
    }
    for name, view in views.items():
        per_user = {}
        for user, res in results.items():
            if res["ready_at"] is None:
                continue
            g = [x for ok, _, rs in res["chunks"] if ok for x in view(rs)]
            i = [x for ok, _, rs in res["chunks"] if not ok for x in view(rs)]
            per_user[user] = (g, i)
        out[name] = summarise(per_user)
    return out


def chunk_calibration(results, alpha=0.05):
    """On genuine chunks: the share of payloads whose `score` falls below q (uniform scores: q), per q."""
    g = np.array([r["score"] for res in results.values() for ok, _, rs in res.get("chunks", []) if ok for r in rs])
    i = np.array([r["score"] for res in results.values() for ok, _, rs in res.get("chunks", []) if not ok for r in rs])
    if len(g) == 0:
        return {}
    return {
        "genuine_below": {str(q): float(np.mean(g < q)) for q in (0.01, 0.05, 0.1, 0.25, 0.5)},
        "genuine_flagged": float(np.mean([r["is_anomaly"] for res in results.values() for ok, _, rs in res["chunks"] if ok for r in rs])),
        "impostor_flagged": float(np.mean([r["is_anomaly"] for res in results.values() for ok, _, rs in res["chunks"] if not ok for r in rs])) if len(i) else None,
        "genuine_chunks_with_any_flag": float(np.mean([any(r["is_anomaly"] for r in rs) for res in results.values() for ok, _, rs in res["chunks"] if ok])),
    }


def baseline_chunks(splits, chunks, n_train):
    """The seed's IF, scored per payload of the same chunks; the same views as `chunk_metrics`."""
    models = {}
    for user, (train, _) in splits.items():
        rows = train[:n_train] if n_train else train
        models[user] = IsolationForest(n_estimators=100, contamination=0.01, random_state=42).fit(
            np.array([contract_features(p) for p in rows]))
    feats = {(u, s, c): np.array([contract_features(p) for p in ps]) for u, cs in chunks.items() for s, c, ps in cs}
    results = {}
    for user, model in models.items():
        rows = []
        for key, fx in feats.items():
            d = model.decision_function(fx)
            rows.append((key[0] == user, key, [{"score": float(x)} for x in d]))
        results[user] = {"ready_at": 1, "chunks": rows}
    out = {}
    for name, view in {
        "per_payload": lambda rs: [r["score"] for r in rs],
        "chunk_last": lambda rs: [rs[-1]["score"]],
        "chunk_mean": lambda rs: [float(np.mean([r["score"] for r in rs]))],
    }.items():
        per_user = {u: ([x for ok, _, rs in res["chunks"] if ok for x in view(rs)],
                        [x for ok, _, rs in res["chunks"] if not ok for x in view(rs)]) for u, res in results.items()}
        out[name] = summarise(per_user)
    return out


FIELDS = {
    "score": lambda r: r["score"],
    "payload_score": lambda r: r.get("payload_score", r["score"]),
    "mouse_score": lambda r: r["mouse_score"],
    "mouse_threshold-mouse_score": lambda r: r["mouse_threshold"] - r["mouse_score"],
    "-is_anomaly": lambda r: -float(r["is_anomaly"]),
}


def service_metrics(results, field="score"):
    f = FIELDS[field]
    per_user = {}
    for user, res in results.items():
        if res["ready_at"] is None:
            continue
        g = [f(r) for ok, _, r in res["rows"] if ok]
        i = [f(r) for ok, _, r in res["rows"] if not ok]
        per_user[user] = (g, i)
    return summarise(per_user)


def session_metrics(results):
    """Session-level: the mean ln(score) of each (profile, held-out session)."""
    per_user = {}
    for user, res in results.items():
        if res["ready_at"] is None:
            continue
        groups = {}
        for ok, skey, r in res["rows"]:
            groups.setdefault((ok, skey), []).append(np.log(max(r["score"], 1e-300)))
        g = [float(np.mean(v)) for (ok, _), v in groups.items() if ok]
        i = [float(np.mean(v)) for (ok, _), v in groups.items() if not ok]
        per_user[user] = (g, i)
    return summarise(per_user)


def flagged_rates(results):
    g = [r["is_anomaly"] for res in results.values() for ok, _, r in res["rows"] if ok]
    i = [r["is_anomaly"] for res in results.values() for ok, _, r in res["rows"] if not ok]
    return {"genuine_flagged": float(np.mean(g)) if g else None, "impostor_flagged": float(np.mean(i)) if i else None}


def run_baseline(splits, n_train):
    per_user = {}
    feats = {}
    for user, (_, test) in splits.items():
        for sname, payloads in test:
            feats[(user, sname)] = np.array([contract_features(p) for p in payloads])
    for user, (train, _) in splits.items():
        rows = train[:n_train] if n_train else train
        x = np.array([contract_features(p) for p in rows])
        model = IsolationForest(n_estimators=100, contamination=0.01, random_state=42).fit(x)
        g, i = [], []
        for (owner, _), fx in feats.items():
            (g if owner == user else i).extend(model.decision_function(fx).tolist())
        per_user[user] = (g, i)
    return summarise(per_user)


# ---------------------------------------------------------------- report


def fmt(m):
    p = m["pooled"]
    if p["auc"] is None:
        return "n/a"
    return f"AUC {p['auc']:.3f}  EER {p['eer']:.3f}  FRR@1%FAR {p['frr_at_1far']:.3f}  (mean per-user AUC {m['mean_user_auc']:.3f})"


def per_user_table(service, baseline, ready):
    lines = ["| user | ready after | AUC | EER | FRR@1%FAR | baseline AUC | baseline EER | baseline FRR@1%FAR |",
             "|---|---|---|---|---|---|---|---|"]
    for user in sorted(baseline["per_user"]):
        s = service["per_user"].get(user, {"auc": None, "eer": None, "frr_at_1far": None})
        b = baseline["per_user"][user]
        v = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
        lines.append(f"| {user} | {ready.get(user)} | {v(s['auc'])} | {v(s['eer'])} | {v(s['frr_at_1far'])} | "
                     f"{v(b['auc'])} | {v(b['eer'])} | {v(b['frr_at_1far'])} |")
    return "\n".join(lines)


def run_chunk_protocol(args, splits, serve_args, log_dir, report):
    rng = random.Random(args.seed)
    chunks = {u: cut_chunks(test, rng, args.chunk_max) for u, (_, test) in splits.items()}
    n_chunks = sum(len(c) for c in chunks.values())
    server = Server(args.vigil, serve_args, log_dir)
    try:
        t0 = time.time()
        res = run_chunks(server, splits, chunks, args.seed)
        elapsed = time.time() - t0
    finally:
        server.stop()
    svc = chunk_metrics(res, "score")
    own = chunk_metrics(res, "payload_score")
    cal = chunk_calibration(res)
    base = None if args.no_baseline else baseline_chunks(splits, chunks, None)
    print(f"\n## Chunk protocol: {n_chunks} held-out chunks of 1-{args.chunk_max} payloads, each scored by every "
          f"profile ({elapsed:.0f} s through the API)")
    print("| view | `score` AUC | EER | FRR@1%FAR | `payload_score` AUC | EER | seed's IF AUC | EER | FRR@1%FAR |")
    print("|---|---|---|---|---|---|---|---|---|")
    v = lambda m, k: "n/a" if m is None or m["pooled"][k] is None else f"{m['pooled'][k]:.3f}"  # noqa: E731
    for name in svc:
        b = base.get(name) if base else None
        print(f"| {name} | {v(svc[name], 'auc')} | {v(svc[name], 'eer')} | {v(svc[name], 'frr_at_1far')} | "
              f"{v(own[name], 'auc')} | {v(own[name], 'eer')} | {v(b, 'auc')} | {v(b, 'eer')} | {v(b, 'frr_at_1far')} |")
    print(f"calibration on genuine chunks (share of payloads with `score` < q): {cal.get('genuine_below')}")
    print(f"is_anomaly: genuine payloads {cal.get('genuine_flagged')}, impostor payloads {cal.get('impostor_flagged')}, "
          f"genuine chunks with any flag {cal.get('genuine_chunks_with_any_flag')}")
    if base:
        print()
        print(per_user_table(svc["chunk_last"], base["chunk_last"], {u: r["ready_at"] for u, r in res.items()})
              .replace("| user |", "| user (chunk_last) |", 1))
    report["chunks"] = {"service": svc, "payload_score": own, "calibration": cal, "baseline": base,
                        "n_chunks": n_chunks}
    if args.dump_chunks:
        Path(args.dump_chunks).write_text(json.dumps(
            {u: [(ok, list(k), [[r["score"], r.get("payload_score", r["score"])] for r in rs])
                 for ok, k, rs in r_["chunks"]] for u, r_ in res.items()}))


def run_curve(args, splits, serve_args, log_dir, report):
    """Accuracy versus enrolment payloads on the chunk protocol: profiles get only their first N enrolment payloads
    (server quotas 20, the smallest model it trains), the baseline is fitted on the same N."""
    curve = [int(x) for x in args.curve.split(",") if x]
    if not curve:
        return
    report["curve"] = {}
    rng = random.Random(args.seed)
    chunks = {u: cut_chunks(test, rng, args.chunk_max) for u, (_, test) in splits.items()}
    small = ["--maxidom-quota-total", "20", "--maxidom-quota-mouse", "20",
             "--maxidom-quota-keyboard", "20", "--maxidom-quota-digraph", "0"]
    print("\n## Accuracy versus enrolment payloads (chunk protocol, pooled; service quotas 20)")
    print("| payloads | per payload `score` AUC | EER | FRR@1%FAR | per chunk (last) AUC | EER | "
          "seed's IF per payload AUC | EER | FRR@1%FAR | per chunk (last) AUC | EER |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in curve:
        server = Server(args.vigil, serve_args + small, log_dir)
        try:
            r = run_chunks(server, splits, chunks, args.seed, n_train=n)
        finally:
            server.stop()
        s = chunk_metrics(r)
        b = None if args.no_baseline else baseline_chunks(splits, chunks, n)
        v = lambda m, k: "n/a" if m is None or m["pooled"][k] is None else f"{m['pooled'][k]:.3f}"  # noqa: E731
        sp, sl = s["per_payload"], s["chunk_last"]
        bp, bl = (b["per_payload"], b["chunk_last"]) if b else (None, None)
        print(f"| {n} | {v(sp, 'auc')} | {v(sp, 'eer')} | {v(sp, 'frr_at_1far')} | {v(sl, 'auc')} | {v(sl, 'eer')} | "
              f"{v(bp, 'auc')} | {v(bp, 'eer')} | {v(bp, 'frr_at_1far')} | {v(bl, 'auc')} | {v(bl, 'eer')} |",
              flush=True)
        report["curve"][n] = {"service": s, "baseline": b}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vigil", default="target/release/vigil")
    ap.add_argument("--data", default="../shared/data/mouse-dev")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "maxidom-dev-payloads"))
    ap.add_argument("--users", default="", help="comma-separated subset, e.g. user7,user9")
    ap.add_argument("--no-feedback", action="store_true", help="serve with --maxidom-feedback false")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra `vigil serve` argument (repeatable)")
    ap.add_argument("--curve", default="", help="payload counts for the accuracy curve, e.g. 20,30,50,100,150")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--seed", type=int, default=7, help="seed of the scoring order")
    ap.add_argument("--out", help="write every number as JSON here")
    ap.add_argument("--protocol", choices=["chunks", "payloads", "both"], default="both",
                    help="chunks: held-out sessions cut into test-like sessions (default part of both); "
                         "payloads: the earlier protocol (every held-out payload on its own, shuffled)")
    ap.add_argument("--dump-chunks", help="write every chunk's (score, payload_score) sequence as JSON here")
    ap.add_argument("--chunk-max", type=int, default=10, help="chunks have 1..N payloads (uniform)")
    args = ap.parse_args()

    data = Path(args.data)
    if not (data / "training_files").is_dir():
        raise SystemExit(f"{data}/training_files not found (run from the repository root, or pass --data)")
    users = set(filter(None, args.users.split(",")))
    sessions = load_sessions(data, Path(args.cache), users)
    splits = {u: split(s) for u, s in sessions.items()}
    serve_args = list(args.serve_arg) + (["--maxidom-feedback", "false"] if args.no_feedback else [])
    print(f"users {len(splits)}; enrolment/held-out payloads: "
          + ", ".join(f"{u} {len(tr)}/{sum(len(p) for _, p in te)}" for u, (tr, te) in splits.items()))
    print(f"serve args: {' '.join(serve_args) or '(shipped defaults)'}; feedback loop "
          f"{'off' if args.no_feedback else 'on (default)'}")
    report = {"serve_args": serve_args, "splits": {u: [len(tr), sum(len(p) for _, p in te)] for u, (tr, te) in splits.items()}}

    log_dir = tempfile.mkdtemp(prefix="vigil-eval-")
    if args.protocol in ("chunks", "both"):
        run_chunk_protocol(args, splits, serve_args, log_dir, report)
    if args.protocol == "chunks":
        run_curve(args, splits, serve_args, log_dir, report)
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=1))
        return
    server = Server(args.vigil, serve_args, log_dir)
    try:
        t0 = time.time()
        res = run_service(server, splits, None, args.seed, "all")
        elapsed = time.time() - t0
    finally:
        server.stop()
    ready = {u: r["ready_at"] for u, r in res.items()}
    # Scores of a run combine a session's payloads; this protocol shuffles the payloads of different sessions,
    # so it ranks by each payload's own score (what `score` was before the sequential evidence).
    service = service_metrics(res, "payload_score")
    fields = {f: service_metrics(res, f)["pooled"]["auc"] for f in FIELDS}
    sess = session_metrics(res)
    rates = flagged_rates(res)
    baseline = None if args.no_baseline else run_baseline(splits, None)
    print(f"\n## Payload protocol, all enrolment payloads ({elapsed:.0f} s through the API)")
    print(f"service (rank by `payload_score`): {fmt(service)}")
    if baseline:
        print(f"baseline (sklearn IF, 15 features): {fmt(baseline)}")
    print("pooled AUC by returned field: " + ", ".join(f"{k} {v:.3f}" for k, v in fields.items() if v is not None))
    print(f"session-level (mean ln score per held-out session): {fmt(sess)}")
    print(f"is_anomaly rates: genuine {rates['genuine_flagged']}, impostor {rates['impostor_flagged']}")
    print(f"payloads until ready: {ready}")
    print("final model versions: " + ", ".join(
        f"{u} v{r['status']['model_version']}" for u, r in res.items() if r["status"]))
    if baseline:
        print()
        print(per_user_table(service, baseline, ready))
    report["all"] = {"service": service, "fields": fields, "session_level": sess, "rates": rates,
                     "ready_at": ready, "baseline": baseline}

    run_curve(args, splits, serve_args, log_dir, report)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
