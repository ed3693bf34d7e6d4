#!/usr/bin/env bash
# Switchyard vs LiteLLM proxy vs direct, with ../shared/bench (read its README first; run its setup.sh once).
#   deploy/bench/run.sh              # embedded mode: SQLite spend log, in-process limiter
#   MODE=pg deploy/bench/run.sh      # PostgreSQL + Redis (pinned to CPU 0 beside the mock), and a
#                                    # virtual key with RPM/TPM limits; PIN_SERVICES=0 leaves them floating
# LITELLM=0 skips the LiteLLM side (it takes ~6 min a repetition).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd); B=${SHARED_BENCH:-$ROOT/../shared/bench}; H=${BENCH_HOME:-/tmp/switchyard-bench}
REPS=${REPS:-1}; MODE=${MODE:-embedded}; STATE=$(mktemp -d)
export SWITCHYARD_MASTER_KEY=sk-bench-1234 SWITCHYARD_SPOOL_DIR=$STATE/spool SWITCHYARD_LOCAL_MODEL=false
KEY=sk-bench-1234
if [ "$MODE" = pg ]; then
  DB=sy_bench_$$; psql -h 127.0.0.1 -U postgres -qc "create database $DB"
  export SWITCHYARD_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/$DB SWITCHYARD_REDIS_URL=redis://127.0.0.1:6379/9
  redis-cli -n 9 flushdb >/dev/null
  switchyard migrate >/dev/null
  switchyard teams create bench --rpm 1000000 --tpm 1000000000 >/dev/null
  KEY=$(switchyard keys create --team bench --rpm 1000000 --tpm 1000000000)
  # Redis and PostgreSQL join the mock and the load generator on CPU 0, so the gateway keeps CPU 1 to
  # itself as the harness requires. Left floating, the scheduler runs Redis on CPU 1 whenever the
  # gateway wakes it: py-spy then charged ~15% of the gateway's time at c=64 to its socket writes.
  if [ "${PIN_SERVICES:-1}" = 1 ]; then
    for p in $(pgrep -x redis-server) $(pgrep -x postgres); do taskset -a -p -c 0 "$p" >/dev/null; done
    trap 'for p in $(pgrep -x redis-server) $(pgrep -x postgres); do taskset -a -p -c 0-$(($(nproc) - 1)) "$p" >/dev/null; done' EXIT
  fi
else
  export SWITCHYARD_DATABASE_URL=sqlite+aiosqlite:///$STATE/switchyard.db
fi
LABEL=switchyard-$MODE
[ "${LITELLM:-1}" = 1 ] && REPS=$REPS "$B/run_all.sh"
for rep in $(seq 1 "$REPS"); do
  "$B/start_mock.sh" 0 18000 0
  "$B/start_gateway.sh" "$LABEL" http://127.0.0.1:4000/health/ready http://127.0.0.1:4000/v1/chat/completions "$KEY" -- \
    switchyard serve --config "$ROOT/deploy/bench/gateway.yaml" --port 4000 --log-level warning
  REPS=1 "$B/bench_gateway.sh" "$LABEL" http://127.0.0.1:4000/v1/chat/completions "$KEY" "$(cat "$H/run/$LABEL.pid")"
  kill "$(cat "$H/run/$LABEL.pid")"; sleep 2
done
"$H/venv-bench/bin/python" "$B/summarize.py" "${OUT:-$H/results/results.jsonl}"
[ "$MODE" = pg ] && psql -h 127.0.0.1 -U postgres -qc "drop database $DB" || true
