#!/usr/bin/env bash
# Schema fuzzing of the served /openapi.json with schemathesis, as a standing check (issue #15).
#
#   scripts/api-fuzz/run.sh [--vigil target/release/vigil] [--db sqlite|postgres|both] [--max-examples N] [--seed S]
#
# For each database it starts the real binary on a fresh database (SQLite in a temporary directory; PostgreSQL: a
# database created on $TEST_DATABASE_URL's server and dropped afterwards), creates an admin, and runs every check
# schemathesis has against every operation, authenticated as that admin (hooks.py). It fails on any server error
# or any answer the document does not describe. The tool comes from requirements.txt (every package pinned) into a
# venv under target/api-fuzz/, rebuilt when requirements.txt changes.
#
# Settings for the run, and why:
# - Rate limits are switched off (LOGIN/REGISTER/FORGOT_PASSWORD/API_RATE_LIMIT=0): the fuzzer sends hundreds of
#   requests a minute from one address, so with the production limits which requests get a 429 would depend on
#   timing, and the run would be flaky. The 429s themselves are documented on every limited operation and their
#   behaviour is tested in the e2e suites (crates/accounts/tests/e2e.rs).
# - One worker and a fixed seed: the same requests in the same order on every run.
# - WEBHOOK_ALLOW_PRIVATE stays off, mail goes nowhere (no MAIL_SERVER), the data directory is temporary.
set -euo pipefail
cd "$(dirname "$0")/../.."

VIGIL=target/release/vigil
DBS=both
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-10}
SEED=${FUZZ_SEED:-15}
while [ $# -gt 0 ]; do
  case "$1" in
    --vigil) VIGIL=$2; shift 2 ;;
    --db) DBS=$2; shift 2 ;;
    --max-examples) MAX_EXAMPLES=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$VIGIL" ] || { echo "no binary at $VIGIL (cargo build --release -p vigil)" >&2; exit 2; }

OUT=target/api-fuzz
VENV=$OUT/venv
REQ=scripts/api-fuzz/requirements.txt
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/st" ] || ! cmp -s "$REQ" "$VENV/requirements.txt"; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/requirements.txt"
fi

ADMIN_USER=fuzzadmin
ADMIN_PASSWORD='Fuzz-admin-pass1!'
SERVER_PID=
WORK=
PG_DB=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=
  if [ -n "$PG_DB" ]; then psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null || true; fi
  PG_DB=
  if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
  WORK=
}
trap cleanup EXIT

run_one() {
  local db=$1 url
  WORK=$(mktemp -d)
  if [ "$db" = postgres ]; then
    [ -n "${TEST_DATABASE_URL:-}" ] || { echo "postgres: TEST_DATABASE_URL is not set" >&2; return 1; }
    PG_ADMIN_URL=$TEST_DATABASE_URL
    PG_DB="vigil_fuzz_$$"
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $PG_DB" >/dev/null
    url="${TEST_DATABASE_URL%/*}/$PG_DB"
  else
    url="sqlite://$WORK/vigil.db"
  fi
  VIGIL_ENV=development VIGIL_DATA_DIR="$WORK" DATABASE_URL="$url" VIGIL_HOST=127.0.0.1 VIGIL_PORT=0 \
    ADMIN_EMAIL=fuzz@example.com ADMIN_USERNAME=$ADMIN_USER ADMIN_PASSWORD="$ADMIN_PASSWORD" \
    LOGIN_RATE_LIMIT=0 REGISTER_RATE_LIMIT=0 FORGOT_PASSWORD_RATE_LIMIT=0 API_RATE_LIMIT=0 \
    LOG_FORMAT=json RUST_LOG=warn \
    "$VIGIL" serve >"$WORK/stdout" 2>"$OUT/server-$db.log" &
  SERVER_PID=$!
  local base=
  for _ in $(seq 1 200); do
    base=$(sed -n 's/^vigil listening on //p' "$WORK/stdout")
    [ -n "$base" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "$db: the server exited; see $OUT/server-$db.log" >&2; return 1; }
    sleep 0.1
  done
  [ -n "$base" ] || { echo "$db: the server did not start" >&2; return 1; }
  echo "== schemathesis on $db ($base, --max-examples $MAX_EXAMPLES, --seed $SEED)"
  local rc=0
  VIGIL_URL=$base FUZZ_ADMIN_USER=$ADMIN_USER FUZZ_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
    PYTHONPATH=scripts/api-fuzz SCHEMATHESIS_HOOKS=hooks \
    "$VENV/bin/st" --config-file scripts/api-fuzz/schemathesis.toml run "$base/openapi.json" --checks all --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
      --workers 1 --no-color --request-timeout 30 --suppress-health-check all \
      --report junit --report-junit-path "$OUT/junit-$db.xml" || rc=$?
  # The server's own count of what it answered (its Prometheus counters), for the record.
  curl -fsS "$base/metrics" | awk -v db="$db" '
    /^http_requests_total\{/ { n += $NF; if ($0 ~ /status="5/) e += $NF }
    END { printf "%s: the server answered %d requests on its routes (metrics), %d of them 5xx\n", db, n, e }'
  if grep -q '"level":"ERROR"' "$OUT/server-$db.log"; then
    echo "$db: the server logged errors:" >&2
    grep '"level":"ERROR"' "$OUT/server-$db.log" | head -20 >&2
    rc=1
  fi
  cleanup
  return $rc
}

status=0
case "$DBS" in
  sqlite) run_one sqlite || status=1 ;;
  postgres) run_one postgres || status=1 ;;
  both) run_one sqlite || status=1; run_one postgres || status=1 ;;
  *) echo "--db sqlite|postgres|both" >&2; exit 2 ;;
esac
exit $status
