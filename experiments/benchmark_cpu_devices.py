"""Benchmark section `cpu_devices`: the paper workload's round with the CPU split into devices.

  python experiments/benchmark.py --sections=cpu_devices [--cpu_devices=1,0]
      [--round_clients=100] [--round_resample=round|once] [--round_repeats=3] [--quick]

For each C in --round_clients (default 100) and each --cpu_devices value in
--cpu_devices (default 1,0: one device, then one per core), `fedar_jax.main`
runs the paper workload (experiments/workload.py; --resample_every from
--round_resample: round, as the round section, or once, a run's default) in a fresh
process, as a user runs it; the settings' processes are interleaved, --round_repeats
times (default 3), so a shared machine's load falls on every setting alike. Per setting it prints
the median of the runs' `round_s` (summary.json: seconds per round of the timed
calls, compile excluded), its ratio to the first setting's, the largest
difference of any metrics.csv cell but `round_s` from the first setting's
(float32 reordering only), and the round against the roofline of this machine
measured in this process (benchmark_round's dense matmul and in-place pass, its
analytic FLOPs and bytes of one round).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

import benchmark_round
import workload
from fedar_jax import platforms
from fedar_jax import train

ROUNDS = 12


def run_main(flags: list[str], workdir: str) -> dict:
  """One `fedar_jax.main` process; its summary.json and metrics.csv rows."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run([sys.executable, '-m', 'fedar_jax.main', f'--workdir={workdir}',
                         '--compilation_cache_dir=', *flags],
                        capture_output=True, text=True, env=env)
  if proc.returncode:
    raise RuntimeError(f'{" ".join(flags)}: {proc.stderr[-2000:]}')
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, 'metrics.csv')) as f:
    header, *rows = [line.rstrip('\n').split(',') for line in f]
  return {'summary': summary, 'header': header, 'rows': rows}


def _largest_difference(a: dict, b: dict) -> float:
  """The largest |difference| of two runs' metrics.csv cells, `round_s` aside."""
  keep = [i for i, name in enumerate(a['header']) if name != 'round_s']
  return max((abs(float(x[i]) - float(y[i])) for x, y in zip(a['rows'], b['rows'])
              for i in keep if x[i] not in ('', 'inf')), default=0.0)


def run(args):
  matmul = benchmark_round.dense_matmul_gflops()
  bandwidth = benchmark_round.memory_gbs()
  yield {'setting': 'dense_matmul_2048_f32', 'gflops': round(matmul, 2)}
  yield {'setting': 'inplace_256mib_f32', 'gb_per_s': round(bandwidth, 2)}
  counts = [int(v) for v in (args.cpu_devices or '1,0').split(',')]
  sizes = (20,) if args.quick else tuple(int(c) for c in (args.round_clients or '100').split(','))
  once = args.round_resample == 'once'
  repeats = args.round_repeats or (1 if args.quick else 3)
  for c in sizes:
    exp = train.build(workload.config(args.quick, num_clients=c))
    flops, moved = (benchmark_round.round_flops(exp, not once),
                    benchmark_round.round_bytes(exp, not once))
    roofline_s = max(flops / (matmul * 1e9), moved / (bandwidth * 1e9))
    flags = workload.flags(args.quick, num_clients=c, rounds=ROUNDS,
                           resample_every='once' if once else 'round')
    runs = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
      for r in range(repeats):
        for n in counts:  # Interleaved: the machine's load falls on every setting alike.
          runs[n].append(run_main(flags + [f'--cpu_devices={n}'], os.path.join(tmp, f'{n}_{r}')))
    first = runs[counts[0]][0]
    base_s = statistics.median(x['summary']['round_s'] for x in runs[counts[0]])
    for n in counts:
      round_s = statistics.median(x['summary']['round_s'] for x in runs[n])
      yield {
          'clients': c, 'cpu_devices': n, 'devices': platforms.cpu_device_count(n),
          'cores': platforms.cpu_cores(), 'resample': 'once' if once else 'round',
          'round_s': round(round_s, 4), 'ratio_to_first': round(round_s / base_s, 3),
          'max_metric_diff': max(_largest_difference(first, x) for x in runs[n]),
          'gflop_per_round': round(flops / 1e9, 3), 'gb_per_round': round(moved / 1e9, 3),
          'roofline_s': round(roofline_s, 4),
          'roofline_fraction': round(roofline_s / round_s, 3),
          'device': runs[n][0]['summary']['device'],
          'round_s_all': [round(x['summary']['round_s'], 4) for x in runs[n]],
      }
