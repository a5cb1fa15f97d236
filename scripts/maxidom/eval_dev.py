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

Curve: `--curve 20,30,50,100,150` repeats the run with profiles that received only the first N enrolment payloads
(server started with every quota at 20, the smallest model the service trains), giving accuracy versus payloads.

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
    results = {}
    bodies = {}
    for user, (_, test) in splits.items():
        for sname, payloads in test:
            for j, p in enumerate(payloads):
                bodies[(user, sname, j)] = json.dumps(p).encode()
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


FIELDS = {
    "score": lambda r: r["score"],
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
    server = Server(args.vigil, serve_args, log_dir)
    try:
        t0 = time.time()
        res = run_service(server, splits, None, args.seed, "all")
        elapsed = time.time() - t0
    finally:
        server.stop()
    ready = {u: r["ready_at"] for u, r in res.items()}
    service = service_metrics(res)
    fields = {f: service_metrics(res, f)["pooled"]["auc"] for f in FIELDS}
    sess = session_metrics(res)
    rates = flagged_rates(res)
    baseline = None if args.no_baseline else run_baseline(splits, None)
    print(f"\n## All enrolment payloads ({elapsed:.0f} s through the API)")
    print(f"service (rank by `score`): {fmt(service)}")
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

    curve = [int(x) for x in args.curve.split(",") if x]
    if curve:
        report["curve"] = {}
        small = ["--maxidom-quota-total", "20", "--maxidom-quota-mouse", "20",
                 "--maxidom-quota-keyboard", "20", "--maxidom-quota-digraph", "0"]
        print("\n## Accuracy versus enrolment payloads (pooled; service quotas 20)")
        print("| payloads | service AUC | EER | FRR@1%FAR | baseline AUC | EER | FRR@1%FAR |")
        print("|---|---|---|---|---|---|---|")
        for n in curve:
            server = Server(args.vigil, serve_args + small, log_dir)
            try:
                r = run_service(server, splits, n, args.seed, f"n={n}")
            finally:
                server.stop()
            s = service_metrics(r)
            b = None if args.no_baseline else run_baseline(splits, n)
            v = lambda m, k: "n/a" if m is None or m["pooled"][k] is None else f"{m['pooled'][k]:.3f}"  # noqa: E731
            print(f"| {n} | {v(s, 'auc')} | {v(s, 'eer')} | {v(s, 'frr_at_1far')} | "
                  f"{v(b, 'auc')} | {v(b, 'eer')} | {v(b, 'frr_at_1far')} |", flush=True)
            report["curve"][n] = {"service": s, "baseline": b}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
