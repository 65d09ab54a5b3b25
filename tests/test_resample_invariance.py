"""Resamplers see the same geometry whatever the feature offset or scale.

Distances are translation and (up to a factor) scale invariant, so every
sampler's kept rows, labels and neighbour choices (hence its synthetic rows,
mapped back) must not change when every feature gets +1e4 or is scaled by
1e6 or 1e-6 (float32). One vmapped call per sampler: a binary [20, 5] set in
D = 3 and a 3-class [40, 16, 8] set in D = 17, each under the four transforms.
ClusterCentroids is left out: it is k-means, not neighbour search, and its
k-means++ seeding compares potentials that tie to the last float32 bit on
these sets (scaling then flips the argmin, as it would in scikit-learn).
"""
import jax
import numpy as np
import pytest

from fedar_jax import resample

K, D, N = 3, 17, 64
SETS = (([20, 5], 3), ([40, 16, 8], 17))
# (offset, scale): x -> x * scale + offset.
TRANSFORMS = ((0.0, 1.0), (1e4, 1.0), (0.0, 1e6), (0.0, 1e-6))


def _sets():
  xs, ys, ms = [], [], []
  for s, (counts, d) in enumerate(SETS):
    rng = np.random.default_rng(s)
    y = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int32)
    x = np.zeros((N, D), np.float32)
    x[:len(y), :d] = rng.normal(size=(len(y), d)) + 1.5 * y[:, None]
    xs.append(x)
    ys.append(np.concatenate([y, np.zeros(N - len(y), np.int32)]))
    ms.append(np.arange(N) < len(y))
  return xs, ys, ms


@pytest.mark.parametrize('name', [n for n in resample.RESAMPLER_NAMES
                                  if n not in ('none', 'cluster_centroids')])
def test_kept_rows_and_neighbour_choices_ignore_offset_and_scale(name):
  xs, ys, ms = _sets()
  bx, by, bm = [], [], []
  for x, y, m in zip(xs, ys, ms):
    for offset, scale in TRANSFORMS:
      bx.append((x * np.float32(scale) + np.float32(offset)).astype(np.float32))
      by.append(y)
      bm.append(m)
  r = resample.make_resampler(name, num_classes=K, capacity=N, max_class_count=40)
  keys = jax.numpy.stack([jax.random.key(3)] * len(bx))
  xo, yo, mo, fb = jax.device_get(jax.jit(jax.vmap(r.resample))(
      keys, np.stack(bx), np.stack(by), np.stack(bm)))
  for s in range(len(SETS)):
    base = s * len(TRANSFORMS)
    for t, (offset, scale) in enumerate(TRANSFORMS[1:], 1):
      i, where = base + t, f'set {s}, x * {scale} + {offset}'
      np.testing.assert_array_equal(mo[i], mo[base], err_msg=f'kept rows differ: {where}')
      np.testing.assert_array_equal(yo[i][mo[i]], yo[base][mo[base]], err_msg=where)
      assert fb[i] == fb[base], where
      back = (xo[i][mo[i]].astype(np.float64) - offset) / scale
      # float32 resolution at 1e4 is ~1e-3; a different neighbour moves rows by O(1).
      np.testing.assert_allclose(back, xo[base][mo[base]], atol=2e-2 if offset else 1e-4,
                                 rtol=1e-4, err_msg=f'synthetic rows differ: {where}')
