#!/usr/bin/env bash
# Load test of the MaxiDOM routes against a release `vigil serve` on loopback (SQLite in a temp dir).
#   scripts/maxidom/loadtest.sh [path/to/vigil] [connections] [seconds] [runs]
#   PACED_RATES="1600 3200 4800" (default; empty to skip): /score is also run paced at each total rate.
# Seeds 16 trained profiles through `vigil import-maxidom` (300 synthetic vectors each), then runs wrk
# (apt-get install wrk) on POST /api/score and POST /api/train with the ~42 KB fixture payload (and, for /score, the
# same payload 100 s later in turn, so every score reads and writes its profile's run state).
# PostgreSQL instead of SQLite: DATABASE_URL=postgres://…/<fresh empty database> (import and serve both read it).
# Each wrk line ends with the server's CPU time per request (user + system from /proc, all its threads).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
vigil="${1:-target/release/vigil}"
conns="${2:-64}"
secs="${3:-10}"
runs="${4:-3}"
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$work" "$here/fixtures" <<'PY'
import json, sqlite3, sys, uuid, pathlib
work, fixtures = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
names = ["avg_mouse_speed","std_mouse_speed","avg_mouse_acceleration","std_mouse_acceleration","path_straightness",
         "avg_click_duration","avg_pause_duration","pause_frequency","avg_turn_angle","avg_stroke_velocity",
         "avg_dwell_time_alpha","avg_flight_time_digraph","std_flight_time_digraph","typing_speed_kps",
         "mouse_after_typing_latency"]
vectors = json.loads((fixtures / "train_vectors.json").read_text())
ids = [str(uuid.UUID(int=0x5EED0000_0000_4000_8000_000000000000 + i)) for i in range(16)]
db = sqlite3.connect(work / "maxidom.db")
db.execute("CREATE TABLE users (profile_id TEXT PRIMARY KEY, password_hash TEXT)")
for pid in ids:
    d = work / "user_data" / pid
    d.mkdir(parents=True)
    with open(d / "features.csv", "w") as f:
        f.write("timestamp," + ",".join(names) + "\n")
        for i, v in enumerate(vectors):
            f.write(f"{1700000000 + 90 * i}," + ",".join(map(repr, v)) + "\n")
db.commit()
(work / "ids").write_text(",".join(ids))
# The load payload 100 s later on the same clock (score.lua alternates it with the original per profile, so each
# /score moves its profile's run on and writes it).
p = json.loads((fixtures / "load_payload.json").read_text())
dt = 100000.0
p["startTimestamp"] += dt
p["endTimestamp"] += dt
for k in p["keyEvents"]:
    k["downTime"] += dt
    k["upTime"] += dt
for path in p["mousePaths"]:
    for pt in path:
        pt["t"] += dt
for c in p["clicks"]:
    c["t"] += dt
(work / "later.json").write_text(json.dumps(p))
PY
RUST_LOG=warn "$vigil" import-maxidom --user-data "$work/user_data" --data-dir "$work/data" | grep -E "vectors imported|models trained"
RUST_LOG=warn "$vigil" serve --port 0 --data-dir "$work/data" > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/server.log" | head -1)"
echo "server at $url; payload $(wc -c < "$here/fixtures/load_payload.json") bytes; $conns connections, ${secs}s x $runs runs"
export IDS="$(cat "$work/ids")" BODY="$here/fixtures/load_payload.json" BODY_LATER="$work/later.json"
# The server's CPU time (user + system, all threads) in µs, from /proc: the machine is shared, so CPU per request
# is the steadier number to compare builds with.
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000000 / hz }' "/proc/$server/stat"; }
run() { # connections, then the rest of wrk's arguments
  local before line requests
  before="$(cpu_us)"
  line="$(wrk -t"$(( $1 < 2 ? 1 : 2 ))" -c"$1" -d"${secs}s" --latency -s "$here/score.lua" "$url" | grep ROUTE=)"
  requests="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")"
  echo "$line server_cpu_per_req=$(( ($(cpu_us) - before) / (requests > 0 ? requests : 1) ))us"
}
for route in score train; do
  for _ in $(seq "$runs"); do
    ROUTE=$route run "$conns"
  done
done
ROUTE=score run 1 | sed 's/^/1 connection: /'
# Paced: the same connections at a fixed total rate (PACED_RATES requests/s; see score.lua), i.e. the latency a
# fleet of clients sees at that load rather than at whatever saturates the machine.
for rate in ${PACED_RATES-1600 3200 4800}; do
  for _ in $(seq "$runs"); do
    RATE=$rate CONNS=$conns ROUTE=score run "$conns" | sed "s/^/paced at $rate\/s: /"
  done
done
curl -s "$url/metrics" | grep -E "^maxidom_(trainings|retrainings|scores|anomalies|train_vectors)_total" || true
