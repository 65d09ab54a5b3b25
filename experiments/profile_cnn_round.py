"""The CNN + latent-resampling round on this machine: conv implementation x client block.

  python experiments/profile_cnn_round.py [--blocks=0,1,2,3,auto] [--lax] [--rounds=3]

The workload is issue 8's CPU command (6 clients, 48x48 faces, 2 classes,
`--latent_resampling=joint`, SMOTE, 1 local epoch, batch 32), built in-process
from a generated FER2013 CSV. For each client block (0 = every client vmapped
in one block; `auto` = `train.auto_client_block`) prints one JSON line:
compile_s, round_s (median wall seconds of --rounds rounds), round_cpu_s
(process CPU seconds per round: comparable when the machine is shared) and
the max |param difference| to the first configuration with as many rounds
(blocks are exact to float rounding). --lax also runs the lax-convolution encoder
(`ConvEncoder(patches=False)`, the encoder before issue 8), one round each.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

from fedar_jax import models
from fedar_jax import fedar_round
from fedar_jax import train
from fedar_jax.config import RunConfig
from fedar_jax.data.pattern_faces import write_fer2013_csv


def cpu_seconds() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def run(cfg: RunConfig, rounds: int, patches: bool):
  cnn = models.cnn
  models.cnn = lambda *a, **k: cnn(*a, **{**k, 'patches': patches})
  try:
    exp = train.build(cfg)
  finally:
    models.cnn = cnn
  state, clients, test = exp.state, exp.data.clients, exp.data.test
  t = time.perf_counter()
  step = jax.jit(fedar_round.make_round(exp.spec)).lower(state, clients, test,
                                                        exp.hparams).compile()
  compile_s = time.perf_counter() - t
  walls, cpus = [], []
  for _ in range(rounds):
    t, c = time.perf_counter(), cpu_seconds()
    state, out = step(state, clients, test, exp.hparams)
    jax.block_until_ready(out)
    walls.append(time.perf_counter() - t)
    cpus.append(cpu_seconds() - c)
  layout = fedar_round.slot_layout(exp.spec, cfg.num_clients)
  return state.params, {'compile_s': round(compile_s, 2),
                        'round_s': round(statistics.median(walls), 3),
                        'round_cpu_s': round(statistics.median(cpus), 3),
                        'blocks_x_size': list(layout)}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--blocks', default='0,1,2,3,auto')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--lax', action='store_true')
  args = parser.parse_args()
  bad = [b for b in args.blocks.split(',') if b != 'auto' and not b.isdigit()]
  if bad:
    print(f'--blocks: {", ".join(bad)} is not a client count or auto', file=sys.stderr)
    sys.exit(2)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'faces.csv')
    write_fer2013_csv(path, 0, [800, 400])
    base = RunConfig(dataset='fer2013', data_path=path, classes=('Happy', 'Sad'), model='cnn',
                     latent_resampling='joint', image_size=48, num_clients=6,
                     samples_per_client=110, imbalance_order='fixed', test_per_class=50,
                     rounds=args.rounds, local_epochs=1)
    runs = [(b, True, args.rounds) for b in args.blocks.split(',')]
    if args.lax:
      runs += [(b, False, 1) for b in args.blocks.split(',') if b != 'auto']
    first = {}  # rounds -> parameters of the first configuration run that long
    for block, patches, rounds in runs:
      cfg = base.replace(client_block=0 if block == 'auto' else int(block))
      if block == '0':  # Explicitly one block (0 is the automatic choice).
        cfg = cfg.replace(client_block=cfg.num_clients)
      params, row = run(cfg, rounds, patches)
      first.setdefault(rounds, params)
      diff = max(float(np.max(np.abs(a - b))) for a, b in
                 zip(jax.tree.leaves(params), jax.tree.leaves(first[rounds])))
      print(json.dumps({'client_block': block, 'encoder': 'patches' if patches else 'lax',
                        'rounds': rounds, **row, 'max_param_diff': diff}), flush=True)


if __name__ == '__main__':
  main()
