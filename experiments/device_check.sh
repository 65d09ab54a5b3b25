#!/usr/bin/env bash
# One script for a lent accelerator (<= 5 minutes) or, with --quick, this CPU (about a minute).
#
#   experiments/device_check.sh            # GPU/TPU machine: full sizes
#   experiments/device_check.sh --quick    # CPU: small sizes, proves the script works
#   experiments/device_check.sh --sections=xla_options,imr_preset --preset_timeout=330
#   experiments/device_check.sh --sections=local_kernel   # --local_kernel=xla vs pallas
#
# Prints JSON lines (experiments/device_check.py): whole-process wall, compile and round
# seconds of `fedar_jax.main` at C = 100/1,000/10,000, a cached rerun, one 30-point sweep,
# the C = 1,000 and 10,000 runs with --data_dtype=bfloat16 (round time against float32),
# the IMR preset's wall time and the round with each --local_kernel at C = 1,000/10,000;
# then the round-vs-reference and local-kernel tests under the platform's precision (the
# lent machines have JAX with CUDA, flax, optax, orbax, absl, pytest; the project's other
# pins, e.g. tensorboardX and tqdm, install from a wheels/ folder if one was carried along).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [[ -d wheels ]]; then  # Only what the machine lacks; a system Python may need the override.
  PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install -q --no-index --no-deps wheels/*.whl \
    2>&1 | tail -2 || true
fi
"$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())'
ROOT="${TMPDIR:-/tmp}/fedar_device_check"  # Workdirs and the compilation cache.
rm -rf "$ROOT"; mkdir -p "$ROOT"
"$PY" experiments/device_check.py --root="$ROOT" "$@" | tee "$ROOT/figures.jsonl"
if [[ -n "${OUT:-}" ]]; then cp "$ROOT/figures.jsonl" "$OUT/"; fi
# Reference equality under --matmul_precision=highest, and the Pallas local kernel (compiled
# with Triton on a GPU) against the XLA local update (full runs of every section only).
if [[ "$*" != *--quick* && "$*" != *--sections* ]]; then
  "$PY" -m pytest -q -p no:cacheprovider tests/test_fedar_round.py tests/test_precision.py \
    tests/test_local_kernel.py 2>&1 | tail -5
fi
