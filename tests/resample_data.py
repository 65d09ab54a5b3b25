"""Seeded parity data sets for the resampler tests, and one cached vmapped run per sampler.

Every data set is padded to the same rows (N) and features (D = 432, zero
columns: distances are unchanged) and uses K = 7 labels (binary sets leave 5
empty), so each sampler compiles once for all of them. imbalanced-learn gets
the same zero-padded features, unpadded rows.
"""
import functools

import jax
import numpy as np

from fedar_jax import resample

K, D = 7, 432
# name -> (class counts, informative dimension). IR from 2 to 20, D from 2 to 432.
SETS = {
    'binary_ir5_d2': ([60, 12], 2),
    'multi_ir7_d16': ([40, 12, 7, 30, 9, 20, 6], 16),
    'binary_ir20_d432': ([120, 6], 432),
    'binary_ir2_d5': ([50, 25], 5),
    'multi_ir20_d32': ([120, 60, 40, 25, 15, 10, 6], 32),
}
NAMES = tuple(SETS)
N = max(sum(c) for c, _ in SETS.values())
MAX_CLASS = max(max(c) for c, _ in SETS.values())


@functools.lru_cache(maxsize=None)
def dataset(name):
  """(x float32[n, D], y int32[n]): Gaussian classes, means 1.2 apart on 2 axes, shuffled."""
  counts, d = SETS[name]
  rng = np.random.default_rng(NAMES.index(name))
  y = np.repeat(np.arange(len(counts)), counts).astype(np.int32)
  x = np.zeros((len(y), D), np.float32)
  x[:, :d] = rng.normal(size=(len(y), d))
  angle = 2 * np.pi * y / len(counts)
  x[:, 0] += 1.2 * np.cos(angle)
  x[:, 1] += 1.2 * np.sin(angle)
  perm = rng.permutation(len(y))
  return x[perm], y[perm]


def batch():
  xs = np.zeros((len(NAMES), N, D), np.float32)
  ys = np.zeros((len(NAMES), N), np.int32)
  ms = np.zeros((len(NAMES), N), bool)
  for i, name in enumerate(NAMES):
    x, y = dataset(name)
    xs[i, :len(y)], ys[i, :len(y)], ms[i, :len(y)] = x, y, True
  return xs, ys, ms


def make(name, **options):
  return resample.make_resampler(name, num_classes=K, capacity=N, max_class_count=MAX_CLASS,
                                 **options)


@functools.lru_cache(maxsize=None)
def _compiled(name, options):
  r = make(name, **dict(options))
  def both(k, x, y, m):
    *out, fell_back = r.resample(k, x, y, m)
    return tuple(out), fell_back
  return jax.jit(jax.vmap(both))


@functools.lru_cache(maxsize=None)
def run(name, seed=0, **options):
  """One vmapped call of sampler `name` on every data set.

  Returns {set name: (x_real, y_real, x_new, y_new, fallback)}: the kept input
  rows (bool mask over the input rows as `keep`), and the synthetic rows.
  """
  xs, ys, ms = batch()
  keys = jax.random.split(jax.random.key(seed), len(NAMES))
  f = _compiled(name, tuple(sorted(options.items())))
  (xo, yo, mo), fb = jax.device_get(f(keys, xs, ys, ms))
  out = {}
  for i, n in enumerate(NAMES):
    rows = len(dataset(n)[1])
    out[n] = dict(keep=mo[i, :rows], x_in=xo[i, :rows], y_in=yo[i, :rows],
                  x_new=xo[i, N:][mo[i, N:]], y_new=yo[i, N:][mo[i, N:]], fallback=bool(fb[i]))
  return out


_ON_BATCH = {}


def on_batch(fn, cache_key=None):
  """fn(x[N, D], y[N], mask[N]) vmapped over the data sets: {set name: result, rows cut to n}.

  With `cache_key`, the result is computed (and compiled) once per test session.
  """
  if cache_key is not None:
    if cache_key not in _ON_BATCH:
      _ON_BATCH[cache_key] = on_batch(fn)
    return _ON_BATCH[cache_key]
  xs, ys, ms = batch()
  out = jax.device_get(jax.jit(jax.vmap(fn))(xs, ys, ms))
  res = {}
  for i, n in enumerate(NAMES):
    rows = len(dataset(n)[1])
    res[n] = jax.tree.map(lambda a: a[i][:rows] if np.ndim(a[i]) else a[i], out)
  return res


def counts(y):
  return np.bincount(y, minlength=K)


def minority(y):
  """The smallest class present in y (the first on ties)."""
  c = counts(y)
  return int(np.argmin(np.where(c > 0, c, np.inf)))


def locate(points, x, bases, neighbours):
  """For each point, the (base, neighbour) segment it lies closest to.

  bases: int[B] rows; neighbours: int[B, k] candidate neighbour rows of each base.
  Returns (base_row int[P], neighbour_row int[P], t float[P], residual float[P])
  with point = x[base] + t * (x[neighbour] - x[base]) + residual.
  """
  xb = x[bases][:, None, :].astype(np.float64)
  diff = x[neighbours].astype(np.float64) - xb           # [B, k, D]
  dd = np.maximum(np.sum(diff * diff, -1), 1e-30)
  res_b, res_n, res_t, res_r = [], [], [], []
  for p in points.astype(np.float64):
    t = np.sum((p - xb) * diff, -1) / dd
    r = np.linalg.norm(xb + t[..., None] * diff - p, axis=-1)
    b, j = np.unravel_index(np.argmin(r), r.shape)
    res_b.append(bases[b]); res_n.append(neighbours[b, j]); res_t.append(t[b, j])
    res_r.append(r[b, j])
  return np.array(res_b), np.array(res_n), np.array(res_t), np.array(res_r)


def knn(x, k, rows=None, among=None):
  """k nearest rows of x[rows] among x[among], excluding the row itself (sklearn, float64)."""
  from sklearn.neighbors import NearestNeighbors
  rows = np.arange(len(x)) if rows is None else rows
  among = np.arange(len(x)) if among is None else among
  nn = NearestNeighbors(n_neighbors=min(k + 1, len(among))).fit(x[among])
  idx = among[nn.kneighbors(x[rows], return_distance=False)]
  return np.array([[j for j in r if j != i][:k] for i, r in zip(rows, idx)])
