#!/usr/bin/env bash
# Runs a fedar_jax sweep on a Cloud TPU VM or pod slice. See experiments/tpu/README.md.
#
#   experiments/tpu/launch.sh plan|create|copy|install|run|collect|delete [-- sweep flags]
#   experiments/tpu/launch.sh all -- --thresholds=1,1.5,2,3,5,10 --seeds=0,1,2,3,4
#
# Settings (environment): TPU_NAME, ZONE, ACCELERATOR_TYPE, RUNTIME_VERSION, WORKDIR,
# COORDINATOR (default auto), and optionally PROJECT (else gcloud's default project),
# TOPOLOGY (the plan's --target; default: ACCELERATOR_TYPE's) and PYTHON (the
# workstation's interpreter for `plan`, with the plan extra installed; default python3).
set -euo pipefail

TPU_NAME="${TPU_NAME:-fedar-jax}"
ZONE="${ZONE:-us-central2-b}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-8}"
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
WORKDIR="${WORKDIR:-runs/tpu_sweep}"      # relative to ~/fedar_jax on the workers
COORDINATOR="${COORDINATOR-auto}"         # --coordinator_address; empty: independent processes
JAX_VERSION="$(sed -n 's/^jax==//p' "$(dirname "$0")/../../requirements.txt")"
REPO_ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"

GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone="$ZONE")
[[ -n "${PROJECT:-}" ]] && WHERE+=(--project="$PROJECT")

on_all_workers() {  # Runs a shell command on every host of the slice, in ~/fedar_jax.
  "${GCLOUD[@]}" ssh "$TPU_NAME" "${WHERE[@]}" --worker=all --command="cd ~/fedar_jax && $1"
}

plan() {  # On this workstation: every program compiled for the slice's topology; exit 2
  # (and no slice) when one does not fit a chip. Writes the plan to plan.json.
  local topology="${TOPOLOGY:-}"
  if [[ -z "$topology" ]]; then
    topology="$(cd "$REPO_ROOT" && "$PYTHON" -c "import sys; from fedar_jax import topology
try: print(topology.of_accelerator_type(sys.argv[1]))
except ValueError:
  print(f'error: ACCELERATOR_TYPE={sys.argv[1]}: no topology known; set '
        'TOPOLOGY=GENERATION:DIMS (the plan\'s --target)', file=sys.stderr); sys.exit(2)" \
      "$ACCELERATOR_TYPE")"
  fi
  (cd "$REPO_ROOT" && "$PYTHON" -m fedar_jax.plan --target="$topology" \
    --plan_json="$REPO_ROOT/plan.json" "$@")
}

create() {
  "${GCLOUD[@]}" create "$TPU_NAME" "${WHERE[@]}" --accelerator-type="$ACCELERATOR_TYPE" \
    --version="$RUNTIME_VERSION"
}

copy() {  # The committed tree (git archive), unpacked on every worker.
  local tarball; tarball="$(mktemp --suffix=.tar.gz)"
  git -C "$REPO_ROOT" archive --format=tar.gz -o "$tarball" HEAD
  "${GCLOUD[@]}" scp "$tarball" "$TPU_NAME":fedar_jax.tar.gz "${WHERE[@]}" --worker=all
  "${GCLOUD[@]}" ssh "$TPU_NAME" "${WHERE[@]}" --worker=all \
    --command="mkdir -p ~/fedar_jax && tar -xzf ~/fedar_jax.tar.gz -C ~/fedar_jax"
  rm -f "$tarball"
}

install() {  # The pinned requirements, then the TPU build of the same JAX version.
  on_all_workers "python3 -m venv .venv && . .venv/bin/activate && pip install -q -U pip \
    && pip install -q -r requirements.txt && pip install -q 'jax[tpu]==$JAX_VERSION' \
    && python -c 'import jax; print(jax.process_index(), jax.device_count(), jax.devices()[0])'"
}

run() {  # The same command on every worker (multi-host: one JAX process per host).
  local join=""
  [[ -n "$COORDINATOR" ]] && join="--coordinator_address=$COORDINATOR"
  on_all_workers ". .venv/bin/activate && python -m fedar_jax.sweep --workdir=$WORKDIR $join $*"
}

collect() {  # Worker 0 writes the CSV files, plots and report.
  mkdir -p "$REPO_ROOT/runs"
  "${GCLOUD[@]}" scp --recurse "$TPU_NAME:fedar_jax/$WORKDIR" "$REPO_ROOT/runs/" \
    "${WHERE[@]}" --worker=0
  echo "results in $REPO_ROOT/runs/$(basename "$WORKDIR")"
}

delete() {
  "${GCLOUD[@]}" delete "$TPU_NAME" "${WHERE[@]}" --quiet
}

step="${1:-}"; shift || true
[[ "${1:-}" == "--" ]] && shift
case "$step" in
  create|copy|install|collect|delete) "$step" ;;
  plan|run) "$step" "$@" ;;
  all) plan "$@" && create && copy && install && run "$@" && collect ;;
  *) echo "usage: $0 plan|create|copy|install|run|collect|delete|all [-- sweep flags]" >&2
     exit 2 ;;
esac
