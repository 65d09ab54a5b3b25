"""The G-mean change of --data_dtype=bfloat16: two sweeps' summary.csv compared point by point.

  python -m fedar_jax.sweep --flagfile=experiments/paper/imr_study_cpu.flags \\
      --data_dtype=float32 --workdir=A
  python -m fedar_jax.sweep --flagfile=experiments/paper/imr_study_cpu.flags \\
      --data_dtype=bfloat16 --workdir=B
  python experiments/data_dtype_gmean.py A/summary.csv B/summary.csv

prints, over the points both files hold (matched on every setting column), the mean and
largest absolute difference of gmean_mean (the mean over seeds), the point with the largest
(its imbalance ratio, resampler and any other setting that varies), and how many points
differ at all. A missing or malformed file is named in one line (exit 2).
"""
import csv
import statistics
import sys

METRIC = 'gmean_mean'
# summary.csv's columns that are not settings (metrics and their spread).
_STAT_SUFFIXES = ('_mean', '_std', '_ci95')


def _rows(path: str) -> tuple[dict, list]:
  """summary.csv's rows keyed by their settings' values, and the settings' names."""
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  if not rows or METRIC not in rows[0]:
    raise ValueError(f'{path}: not a sweep summary.csv (no rows, or no {METRIC} column)')
  settings = [k for k in rows[0] if not k.endswith(_STAT_SUFFIXES) and k != 'n_seeds']
  return {tuple(r[k] for k in settings): r for r in rows}, settings


def _point(settings: list, common: list, key: tuple) -> dict:
  """`key`'s imbalance ratio, resampler and every other setting that varies over `common`."""
  varies = [i for i, name in enumerate(settings)
            if name in ('imbalance_ratio', 'resampler') or len({k[i] for k in common}) > 1]
  return {settings[i]: key[i] for i in varies}


def compare(path_a: str, path_b: str) -> str:
  """The report of `METRIC`'s differences between two summary.csv files."""
  a, settings = _rows(path_a)
  b, _ = _rows(path_b)
  common = sorted(set(a) & set(b))
  if not common:
    raise ValueError(f'{path_a} and {path_b} share no point')
  diffs = {k: abs(float(a[k][METRIC]) - float(b[k][METRIC])) for k in common}
  worst = max(diffs, key=diffs.get)
  return (f'{len(common)} points: |delta {METRIC}| mean {statistics.fmean(diffs.values()):.4f}, '
          f'max {diffs[worst]:.4f} at {_point(settings, common, worst)} '
          f'({a[worst][METRIC]} vs {b[worst][METRIC]}); '
          f'{sum(d > 0 for d in diffs.values())} points differ')


def main(argv: list[str]) -> int:
  """Prints the report of argv's two summary.csv files; 2 (one stderr line) on bad input."""
  if len(argv) != 2:
    print('usage: data_dtype_gmean.py A/summary.csv B/summary.csv', file=sys.stderr)
    return 2
  try:
    print(compare(argv[0], argv[1]))
  except (OSError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
