"""XLA:CPU fusion emitters A/B: compile seconds and seconds per round, alternated in one process.

  python experiments/emitters_ab.py --resamplers=none,smote --clients=100

For each resampler, the block of rounds (`fedar_round.make_rounds`, --block rounds,
--resample_every=round) is compiled with XLA's default options and with
`programs.compiler_options()`; then the two executables are called alternately
--repeats times and the median seconds per round of each are reported, so
both see the same machine load.
"""
import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import workload
from fedar_jax import fedar_round
from fedar_jax import loop
from fedar_jax import programs
from fedar_jax import resample
from fedar_jax import train


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--resamplers', default='none,smote')
  parser.add_argument('--clients', type=int, default=100)
  parser.add_argument('--block', type=int, default=5)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  names = args.resamplers.split(',')
  unknown = [n for n in names if n not in resample.RESAMPLER_NAMES]
  if unknown:
    print(f'--resamplers: unknown {", ".join(unknown)}; known: '
          f'{", ".join(resample.RESAMPLER_NAMES)}', file=sys.stderr)
    sys.exit(2)
  for name in names:
    exp = train.build(workload.config(num_clients=args.clients, resampler=name))
    data, test = jax.device_put(exp.data.clients), jax.device_put(exp.data.test)
    a = (exp.state, data, test, exp.hparams, jnp.int32(args.block))
    lowered = jax.jit(fedar_round.make_rounds(exp.spec, args.block)).lower(*a)
    record, runs = {'resampler': name, 'clients': args.clients}, {}
    for label, options in (('default', {}), ('classic', programs.compiler_options())):
      t = time.perf_counter()
      runs[label] = lowered.compile(options)
      record[f'{label}_compile_s'] = round(time.perf_counter() - t, 2)
      jax.block_until_ready(runs[label](*a))
    times = {label: [] for label in runs}
    for _ in range(args.repeats):
      for label, step in runs.items():
        t = time.perf_counter()
        jax.block_until_ready(step(*a))
        times[label].append((time.perf_counter() - t) / args.block)
    for label, ts in times.items():
      record[f'{label}_round_s'] = round(statistics.median(ts), 4)
    record['device'] = loop.device_description()
    print(json.dumps(record), flush=True)


if __name__ == '__main__':
  main()
