"""The driver's host work per round: one JSON line.

  python experiments/driver_overhead.py --clients=100 --block=5

Times what `loop.train_and_evaluate` does on the host for each round of a
fetched block (`loop.csv_rows`, the CSV writes and the log lines'
formatting) on outputs of the round's real structure for C clients
(zeros), and what the sweep does per round for S points. Device time is not
included: compare with the round's own time (e.g. 3.7 ms at C = 100 on one
H200, issue 8).

Also times fetching a call's outputs for a partial block (count < block):
`loop.run_block`'s fetch-then-slice (`fetch_then_slice_ms`) against slicing
on the device first (`slice_then_fetch_ms`; `slice_then_fetch_first_ms` is
its first call for a new count, which compiles a slice program per leaf).
"""
import argparse
import csv
import io
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import workload
from fedar_jax import fedar_round
from fedar_jax import sharding
from fedar_jax import loop
from fedar_jax import train


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--clients', type=int, default=100)
  parser.add_argument('--block', type=int, default=5)
  parser.add_argument('--points', type=int, default=30, help='sweep points S')
  parser.add_argument('--repeats', type=int, default=200)
  args = parser.parse_args()
  exp = train.build(workload.config(quick=True, num_clients=args.clients, num_classes=3,
                                    samples_per_client=21, feature_dim=4, imbalance_ratio=4.0))
  spec, state, hp = exp.spec, exp.state, exp.hparams
  clients, test = exp.data.clients, exp.data.test
  like = jax.eval_shape(fedar_round.make_rounds(spec, args.block), state, clients, test, hp,
                        jnp.int32(args.block))[1]
  outs = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), like)
  header = loop.csv_header(['a', 'b', 'c'])
  writer = csv.writer(io.StringIO())

  def per_call(out_block):
    rows = loop.csv_rows(1, out_block, 0.001)
    writer.writerows(rows)
    for row in rows[::len(rows) // args.block]:  # One log line per round.
      cell = dict(zip(header, row))
      '%s %s %s' % (cell['accuracy'], cell['gmean'], cell['f1'])

  record = {'clients': args.clients}
  swept = jax.tree.map(lambda a: np.zeros((a.shape[0], args.points) + a.shape[1:], a.dtype),
                       outs)
  for name, block in (('run', outs), ('sweep', swept)):
    t = time.perf_counter()
    for _ in range(args.repeats // args.block):
      per_call(block)
    record[f'{name}_host_ms_per_round'] = round(
        1e3 * (time.perf_counter() - t) / (args.repeats // args.block * args.block), 3)
  record['sweep_points'] = args.points
  record.update(fetch_timings(like, args.block))
  print(json.dumps(record))


def fetch_timings(like, block: int, repeats: int = 20) -> dict:
  """Milliseconds (min of `repeats`) to fetch a block's device outputs, first `count` rounds."""
  device_outs = jax.block_until_ready(jax.tree.map(lambda a: jnp.ones(a.shape, a.dtype), like))
  count = max(1, block - 1)
  ways = {'fetch_then_slice': lambda: jax.tree.map(lambda a: a[:count],
                                                   sharding.fetch(device_outs)),
          'slice_then_fetch': lambda: sharding.fetch(jax.tree.map(lambda a: a[:count],
                                                                  device_outs))}
  record = {'fetch_bytes': sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(like))}
  for name, fn in ways.items():
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    best = float('inf')
    for _ in range(repeats):
      t = time.perf_counter()
      fn()
      best = min(best, time.perf_counter() - t)
    record[f'{name}_ms'] = round(1e3 * best, 3)
    if name == 'slice_then_fetch':
      record[f'{name}_first_ms'] = round(1e3 * first, 3)
  return record


if __name__ == '__main__':
  main()
