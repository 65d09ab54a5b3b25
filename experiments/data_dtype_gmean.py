"""The G-mean change of --data_dtype=bfloat16: two sweeps' summary.csv compared point by point.

  python -m fedar_jax.sweep --flagfile=experiments/paper/imr_study_cpu.flags \\
      --data_dtype=float32 --workdir=A
  python -m fedar_jax.sweep --flagfile=experiments/paper/imr_study_cpu.flags \\
      --data_dtype=bfloat16 --workdir=B
  python experiments/data_dtype_gmean.py A/summary.csv B/summary.csv

prints, over the points both files hold (matched on every setting column), the mean and
largest absolute difference of gmean_mean (the mean over seeds), the point with the largest,
and how many points differ at all.
"""
import csv
import statistics
import sys

METRIC = 'gmean_mean'
# summary.csv's columns that are not settings (metrics and their spread).
_STAT_SUFFIXES = ('_mean', '_std', '_ci95')


def _rows(path: str) -> dict:
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  settings = [k for k in rows[0] if not k.endswith(_STAT_SUFFIXES) and k != 'n_seeds']
  return {tuple(r[k] for k in settings): r for r in rows}, settings


def compare(path_a: str, path_b: str) -> str:
  """The report of `METRIC`'s differences between two summary.csv files."""
  a, settings = _rows(path_a)
  b, _ = _rows(path_b)
  common = sorted(set(a) & set(b))
  if not common:
    raise SystemExit(f'error: {path_a} and {path_b} share no point')
  diffs = {k: abs(float(a[k][METRIC]) - float(b[k][METRIC])) for k in common}
  worst = max(diffs, key=diffs.get)
  where = {n: v for n, v in zip(settings, worst) if n in ('imbalance_ratio', 'resampler')}
  return (f'{len(common)} points: |delta {METRIC}| mean {statistics.fmean(diffs.values()):.4f}, '
          f'max {diffs[worst]:.4f} at {where} ({a[worst][METRIC]} vs {b[worst][METRIC]}); '
          f'{sum(d > 0 for d in diffs.values())} points differ')


if __name__ == '__main__':
  if len(sys.argv) != 3:
    raise SystemExit(__doc__)
  print(compare(sys.argv[1], sys.argv[2]))
