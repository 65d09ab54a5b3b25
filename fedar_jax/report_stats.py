"""The report's statistics: 95% confidence intervals of a mean over seeds, and which setting
of a column is best where a paired test over seeds says so (paired t-test, Holm-corrected).

Every function takes plain floats; replicates are paired by their key (seed, data seed).
"""
import math

import numpy as np

# Family-wise error rate of the Holm-corrected comparisons of one table column.
ALPHA = 0.05

TEST_NAME = (f'two-sided paired t-test over seeds (pairs: same seed and data seed), '
             f'Holm-corrected at {ALPHA:g} within each column')


def interval95(values) -> tuple[float, float]:
  """(mean, half width of the 95% t-interval) of a sample of floats; half width nan for
  fewer than two values."""
  v = np.asarray(values, dtype=np.float64)
  if len(v) < 2:
    return float(v.mean()), math.nan
  from scipy import stats
  return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def paired_p(a: dict, b: dict) -> float:
  """Two-sided p-value of a paired t-test of a vs b ({replicate key: value}) over their
  common keys; 1.0 with fewer than two pairs or no difference, 0.0 for a constant non-zero
  difference."""
  common = sorted(set(a) & set(b))
  if len(common) < 2:
    return 1.0
  d = np.array([a[k] - b[k] for k in common])
  if np.allclose(d, d[0], rtol=0, atol=1e-12):
    return 1.0 if abs(d[0]) <= 1e-12 else 0.0
  from scipy import stats
  return float(stats.ttest_rel([a[k] for k in common], [b[k] for k in common]).pvalue)


def holm(pvalues: list[float]) -> list[float]:
  """Holm-adjusted p-values (step-down, monotone, capped at 1), in the input order."""
  order = np.argsort(pvalues, kind='stable')
  m = len(pvalues)
  adjusted = [0.0] * m
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * pvalues[i]))
    adjusted[i] = running
  return adjusted


def separable_best(samples: dict) -> tuple[str | None, list[str]]:
  """The best of a column's settings where the paired tests say so.

  samples: {setting: {replicate key: value}} (higher is better). The candidate is the
  setting of the highest mean; it is paired-t-tested against every other setting and the
  p-values Holm-corrected. Returns (candidate, []) when every corrected p is below ALPHA,
  else (None, [candidate and every setting not separable from it]) (one setting: (it, [])).
  """
  means = {s: float(np.mean(list(v.values()))) for s, v in samples.items()}
  best = max(means, key=means.get)
  others = [s for s in samples if s != best]
  if not others:
    return best, []
  adjusted = holm([paired_p(samples[best], samples[s]) for s in others])
  tied = [s for s, p in zip(others, adjusted) if p >= ALPHA]
  return (best, []) if not tied else (None, [best] + tied)
