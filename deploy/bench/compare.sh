#!/usr/bin/env bash
# Embedded (SQLite, no limits) against MODE=pg (PostgreSQL + Redis, a rate-limited key), alternated
# ROUNDS times so that a host whose speed drifts affects both sides alike; prints medians and ratios.
#   ROUNDS=3 LATS=0 deploy/bench/compare.sh   (LATS="0 50" runs both mock latencies; one table row per latency)
set -euo pipefail
# Longer than run_suite.sh's defaults: a 1,000-request c=1 run lasts a second and reads noisy.
export JSON_RUNS=${JSON_RUNS:-1:3000,16:3000,64:3000} STREAM_RUNS=${STREAM_RUNS:-1:1000,16:1000,64:1000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd); H=${BENCH_HOME:-/tmp/switchyard-bench}
OUTDIR=$H/results/compare-$(date +%Y%m%d-%H%M%S); mkdir -p "$OUTDIR"
for r in $(seq 1 "${ROUNDS:-3}"); do
  for m in embedded pg; do
    OUT=$OUTDIR/r$r-$m.jsonl MODE=$m REPS=1 LITELLM=0 "$ROOT/deploy/bench/run.sh" > "$OUTDIR/r$r-$m.log" 2>&1
  done
done
python3 "$ROOT/deploy/bench/ratio.py" "$OUTDIR"
