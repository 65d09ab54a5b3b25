"""Benchmark section `sweep`: 6 thresholds x 5 seeds as one program vs 30 separate runs.

Both arms run the same engine on the same data for the same rounds:
  sweep:    the round vmapped over a sweep axis S = 30 (fedar_jax.sweep_runner), one compile;
  separate: the single-run round (train.build + jit(make_round)), run 30 times one after
            another. Thresholds, seeds and learning rates are traced, so in one process
            the 30 runs share one compiled program; `separate_s_with_30_compiles` adds
            the measured compile time 29 more times, the cost of 30 `fedar_jax.main`
            invocations.
"""
import time

import jax
import numpy as np

from fedar_jax import fedar_round
from fedar_jax import sweep_runner
from fedar_jax import loop
from fedar_jax import train
from fedar_jax.config import RunConfig

THRESHOLDS = (1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
SEEDS = (0, 1, 2, 3, 4)


def _timed_compile(fn, *args):
  t = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - t


def run(args):
  base = RunConfig(rounds=5)  # The embedded default: 10 clients x 220 x 432, IR 10, SMOTE.
  if args.quick:
    base = base.replace(num_clients=4, samples_per_client=60, feature_dim=32, rounds=2,
                        local_epochs=2, test_per_class=100)
  axes = sweep_runner.SweepAxes.of(base, thresholds=THRESHOLDS, seeds=SEEDS)
  [group] = sweep_runner.make_groups(base, axes)
  exps = [train.build(group.points[0])]
  exps += [train.build(p, exps[0].data) for p in group.points[1:]]
  clients, test = jax.device_put(exps[0].data.clients), jax.device_put(exps[0].data.test)

  # Sweep arm: one program over S = 30.
  state = sweep_runner.stack([e.state for e in exps])
  hparams = sweep_runner.stack([e.hparams for e in exps])
  step, sweep_compile = _timed_compile(sweep_runner.make_sweep_round(exps[0].spec), state,
                                       clients, test, hparams)
  t = time.perf_counter()
  for _ in range(base.rounds):
    state, out = step(state, clients, test, hparams)
  jax.block_until_ready(out)
  sweep_rounds = time.perf_counter() - t
  sweep_gmean = np.asarray(out.metrics['gmean'])

  # Separate arm: 30 runs of the single-run round, one after another.
  single, single_compile = _timed_compile(fedar_round.make_round(exps[0].spec), exps[0].state,
                                          clients, test, exps[0].hparams)
  t, gmeans = time.perf_counter(), []
  for e in exps:
    s = e.state
    for _ in range(base.rounds):
      s, o = single(s, clients, test, e.hparams)
    gmeans.append(float(o.metrics['gmean']))
  separate_rounds = time.perf_counter() - t

  yield {
      'points': len(exps), 'clients': base.num_clients, 'rounds': base.rounds,
      'device': loop.device_description(),
      'sweep_compile_s': round(sweep_compile, 2), 'sweep_rounds_s': round(sweep_rounds, 3),
      'sweep_s': round(sweep_compile + sweep_rounds, 2),
      'separate_compile_s': round(single_compile, 2),
      'separate_rounds_s': round(separate_rounds, 3),
      'separate_s': round(single_compile + separate_rounds, 2),
      'separate_s_with_30_compiles': round(len(exps) * single_compile + separate_rounds, 2),
      'rounds_speedup': round(separate_rounds / sweep_rounds, 2),
      'max_abs_gmean_diff': float(np.max(np.abs(sweep_gmean - np.array(gmeans)))),
  }
