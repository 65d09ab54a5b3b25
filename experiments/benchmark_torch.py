"""Benchmark section `torch`: the round in the paper's own stack beside fedar_jax's, one run.

  python experiments/benchmark.py --sections=torch --compare_python=COMPARE_VENV/bin/python
      [--round_clients=100] [--round_resample=round|once] [--round_repeats=3]
      [--cpu_devices=1,0] [--torch_workers=W] [--quick]

COMPARE_VENV is a venv of its own (Flower's pins do not fit the project's, and in the
project's venv tensorboardX would import torch into every run):

  python3 -m venv COMPARE_VENV && COMPARE_VENV/bin/pip install torch==2.13.0 \\
      "flwr[simulation]==1.42.0" imbalanced-learn==0.14.2

FedAR's authors ran Flower with PyTorch clients that resample with imbalanced-learn. On
the very rows of fedar_jax's paper workload (experiments/workload.py, `train.build`,
written to an .npz), this section times, under COMPARE_PYTHON:
  flower   Flower's own simulation (experiments/flower_round.py: Ray actors of one CPU,
           FedAvg);
  clients  the same PyTorch + imbalanced-learn clients without Flower
           (experiments/torch_round.py: one single-threaded worker process per core,
           --torch_workers), Flower's clients without its server, messages and actors;
and, in this Python, whole `fedar_jax.main` processes of the same workload with each
--cpu_devices value (section `cpu_devices`'s `run_main`). Each stack runs --round_repeats
timed rounds after a warm-up round; with --round_resample=once each client's rows are
resampled once before the rounds, with round, by the client inside every round. Each
`speedup_vs_*` is that stack's median seconds per round over fedar_jax's. Without
--compare_python the section prints one record saying what to install.
"""
import json
import os
import statistics
import subprocess
import tempfile

import numpy as np

import benchmark_cpu_devices
import workload
from fedar_jax import train

SCRIPTS = {'flower': 'flower_round.py', 'clients': 'torch_round.py'}


def write_rows(path: str, exp, cfg) -> None:
  """The workload's client and test rows and its settings, as flower_round.py and
  torch_round.py read them."""
  clients = exp.data.clients
  np.savez(path, x=np.asarray(clients.x), y=np.asarray(clients.y),
           mask=np.asarray(clients.mask), test_x=np.asarray(exp.data.test.x),
           threshold=cfg.threshold, learning_rate=cfg.learning_rate,
           local_epochs=cfg.local_epochs, batch_size=cfg.batch_size, hidden=cfg.hidden[0],
           num_classes=exp.spec.num_classes)


def stack_rounds(python: str, stack: str, path: str, rounds: int, once: bool,
                 workers: int | None) -> dict:
  """One of SCRIPTS under `python` for `rounds` rounds; its JSON record."""
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), SCRIPTS[stack])
  extra = [f'--workers={workers}'] if stack == 'clients' and workers else []
  proc = subprocess.run([python, script, f'--data={path}', f'--rounds={rounds}',
                         f'--resample={"once" if once else "round"}', *extra],
                        capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f'{SCRIPTS[stack]}: {proc.stderr.strip().splitlines()[-1:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args):
  if not args.compare_python:
    yield {'skipped': 'needs --compare_python: a venv with torch==2.13.0, '
                      'flwr[simulation]==1.42.0 and imbalanced-learn (module docstring)'}
    return
  sizes = (10,) if args.quick else tuple(int(c) for c in (args.round_clients or '100').split(','))
  once = args.round_resample == 'once'
  repeats = args.round_repeats or (1 if args.quick else 3)
  counts = [int(v) for v in (args.cpu_devices or '1,0').split(',')]
  resample = 'once' if once else 'round'
  for c in sizes:
    cfg = workload.config(args.quick, num_clients=c)
    exp = train.build(cfg)
    flags = workload.flags(args.quick, num_clients=c, rounds=benchmark_cpu_devices.ROUNDS,
                           resample_every=resample)
    records, engine = {}, {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, 'rows.npz')
      write_rows(path, exp, cfg)
      for stack in SCRIPTS:
        records[stack] = stack_rounds(args.compare_python, stack, path, repeats + 1, once,
                                      args.torch_workers)
      for r in range(repeats):
        for n in counts:
          run_ = benchmark_cpu_devices.run_main(flags + [f'--cpu_devices={n}'], f'{tmp}/{n}_{r}')
          engine[n].append(run_['summary']['round_s'])
    medians = {}
    for stack, record in records.items():
      medians[stack] = statistics.median(record['round_s_all'][1:])  # After the warm-up.
      yield {'clients': c, 'stack': stack, 'resample': resample,
             'round_s': round(medians[stack], 4), **record}
    for n in counts:
      round_s = statistics.median(engine[n])
      yield {'clients': c, 'stack': 'fedar_jax', 'cpu_devices': n, 'resample': resample,
             'round_s': round(round_s, 4),
             **{f'speedup_vs_{stack}': round(s / round_s, 1) for stack, s in medians.items()},
             'round_s_all': [round(t, 4) for t in engine[n]]}
