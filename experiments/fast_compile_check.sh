#!/usr/bin/env bash
# --fast_compile on a GPU machine (about 4 minutes): compile and round seconds of the paper
# workload at 1,000 clients with and without it (compilation cache off), then the IMR preset
# with it under a 200 s limit (rows written of 103,500). Run from the repository root;
# installs carried wheels/ first (the lent machines lack tensorboardX and tqdm).
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -d wheels ]]; then
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --no-index --no-deps wheels/*.whl 2>&1 | tail -1
fi
P="--dataset=synthetic --samples_per_client=220 --feature_dim=432 --num_classes=2 --imbalance_ratio=10 --hidden=10 --local_epochs=5 --batch_size=32 --resampler=smote --threshold=1.5 --num_clients=1000 --rounds=10 --compilation_cache_dir="
for fc in --fast_compile --nofast_compile; do
  python3 -m fedar_jax.main $P $fc --workdir=/tmp/m$fc >/dev/null 2>&1
  python3 -c "import json;s=json.load(open('/tmp/m$fc/summary.json'));print('$fc', 'compile_s', s['compile_s'], 'round_s', s['round_s'], 'gmean', s['final']['gmean'])"
done
S=$(date +%s.%N)
timeout 200 python3 -m fedar_jax.sweep --flagfile=experiments/paper/imr_study.flags --workdir=/tmp/imr \
  --fast_compile --compilation_cache_dir=/tmp/cc > /tmp/imr.log 2>&1
echo rc $? wall $(python3 -c "print($(date +%s.%N)-$S)") rows $(($(wc -l < /tmp/imr/sweep.csv)-1)) of 103500
tail -3 /tmp/imr.log
