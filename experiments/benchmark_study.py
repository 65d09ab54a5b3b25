"""Benchmark section `study`: the CPU IMR preset as one sweep vs the same grid as separate runs.

  python experiments/benchmark.py --sections=study [--quick]

Arm 1 (sweep): `python -m fedar_jax.sweep --flagfile=experiments/paper/imr_study_cpu.flags`,
whole-process wall seconds, cold (a new, empty compilation cache).
Arm 2 (separate): the same grid as one `python -m fedar_jax.main` per point, the way a
study ran before the sweep folded data axes in. Running every point would take hours,
so a measured subset of points (spread over resamplers and ratios, `--study_points`,
default 4; --quick 2) runs with the compilation cache off, and the mean wall time per
run is multiplied by the grid size (stated as extrapolated in the output).
Both arms run in the same invocation, on the same machine.
"""
import itertools
import os
import subprocess
import sys
import tempfile
import time

from fedar_jax.sweep_axes import SWEEP_FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET = os.path.join(REPO, 'experiments', 'paper', 'imr_study_cpu.flags')

# Sweep list flag -> the single-run flag it lists.
LISTS = {name: entry.field for name, entry in SWEEP_FLAGS.items()}


def read_flagfile(path: str) -> tuple[list[str], dict[str, list[str]]]:
  """(single-run flags, {sweep list flag: values}) of a flagfile."""
  single, lists = [], {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line.startswith('--'):
        continue
      name, _, value = line[2:].partition('=')
      if name in LISTS:
        lists[name] = [v for v in value.split(',') if v]
      else:
        single.append(line)
  return single, lists


def grid(lists: dict[str, list[str]]) -> list[list[str]]:
  """Every point of the grid as single-run flags."""
  names = list(lists)
  return [[f'--{LISTS[n]}={v}' for n, v in zip(names, values)]
          for values in itertools.product(*(lists[n] for n in names))]


def spread(points: list, k: int) -> list:
  """k points evenly spread over the list (first and last included when k >= 2)."""
  if k >= len(points):
    return points
  if k == 1:
    return [points[0]]
  return [points[round(i * (len(points) - 1) / (k - 1))] for i in range(k)]


def _wall(args: list[str]) -> float:
  t = time.perf_counter()
  subprocess.run([sys.executable, '-m', *args], cwd=REPO, check=True, capture_output=True)
  return time.perf_counter() - t


def run(args):
  single, lists = read_flagfile(PRESET)
  if args.quick:  # Two resamplers, two ratios, one seed: the same code paths, smaller.
    lists = {k: (v[:2] if k in ('resamplers', 'imbalance_ratios') else v[:1])
             for k, v in lists.items()}
  points = grid(lists)
  root = tempfile.mkdtemp(prefix='fedar_study_')
  sweep_args = ['fedar_jax.sweep', *single, *[f'--{k}={",".join(v)}' for k, v in lists.items()],
                f'--workdir={os.path.join(root, "sweep")}',
                f'--compilation_cache_dir={os.path.join(root, "cache")}']
  sweep_s = _wall(sweep_args)
  subset = spread(points, getattr(args, 'study_points', None) or (2 if args.quick else 4))
  times = [_wall(['fedar_jax.main', *single, *p, f'--workdir={os.path.join(root, f"run{i}")}',
                  '--compilation_cache_dir='])
           for i, p in enumerate(subset)]
  per_run = sum(times) / len(times)
  yield {'preset': os.path.relpath(PRESET, REPO), 'points': len(points),
         'sweep_wall_s': round(sweep_s, 1), 'separate_runs_measured': len(subset),
         'separate_run_mean_s': round(per_run, 2),
         'separate_wall_s_extrapolated': round(per_run * len(points), 1),
         'speedup': round(per_run * len(points) / sweep_s, 1), 'quick': bool(args.quick)}
