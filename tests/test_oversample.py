import collections

import jax
import numpy as np
import pytest
from imblearn.over_sampling import RandomOverSampler, SMOTE
from sklearn.neighbors import NearestNeighbors

from fedar_jax import resample


def _data(seed, counts, d):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(len(counts)), counts).astype(np.int32)
  x = (rng.normal(size=(len(y), d)) + 3 * y[:, None]).astype(np.float32)
  perm = rng.permutation(len(y))
  return x[perm], y[perm]


def _run(name, x, y, k, pad=0, max_class_count=None, **opts):
  n = len(y)
  xp = np.concatenate([x, np.full((pad, x.shape[1]), 99.0, np.float32)])
  yp = np.concatenate([y, np.zeros(pad, np.int32)])
  mp = np.arange(n + pad) < n
  r = resample.make_resampler(name, num_classes=k, capacity=n + pad,
                              max_class_count=max_class_count, **opts)
  xo, yo, mo, _ = jax.jit(r.resample)(jax.random.key(0), xp, yp, mp)
  assert xo.shape == (r.capacity, x.shape[1])
  mo = np.asarray(mo)
  return np.asarray(xo)[mo], np.asarray(yo)[mo], r


@pytest.mark.parametrize('name,ref', [('smote', SMOTE), ('random_over', RandomOverSampler)])
@pytest.mark.parametrize('counts,d', [([50, 7], 2), ([40, 12, 7, 30, 9, 20, 6], 16),
                                      ([100, 7], 432)])
def test_class_counts_equal_imblearn(name, ref, counts, d):
  x, y = _data(0, counts, d)
  _, yo, _ = _run(name, x, y, len(counts))
  _, y_ref = ref(random_state=0).fit_resample(x, y)
  assert collections.Counter(yo.tolist()) == collections.Counter(y_ref.tolist())


def test_smote_points_lie_on_segments_to_k_nearest_same_class_neighbours():
  counts, k = [60, 10, 8], 5
  x, y = _data(1, counts, 6)
  xo, yo, _ = _run('smote', x, y, 3, k_neighbors=k)
  np.testing.assert_array_equal(xo[:len(y)], x)  # originals kept in place
  for cls in (1, 2):
    members = x[y == cls]
    nn = NearestNeighbors(n_neighbors=k + 1).fit(members).kneighbors(members)[1][:, 1:]
    for p in xo[len(y):][yo[len(y):] == cls]:
      best = np.inf
      for i in range(len(members)):
        for j in nn[i]:
          seg = members[j] - members[i]
          t = np.dot(p - members[i], seg) / np.dot(seg, seg)
          if 0 <= t <= 1:
            best = min(best, np.linalg.norm(members[i] + t * seg - p))
      assert best < 1e-4


def test_smote_small_classes_do_not_crash():
  # class 1 has 3 samples (< k + 1), class 2 a single sample: imbalanced-learn raises here.
  x, y = _data(2, [20, 3, 1], 4)
  xo, yo, _ = _run('smote', x, y, 3)
  assert np.bincount(yo).tolist() == [20, 20, 20]
  assert np.all(np.isfinite(xo))
  singles = xo[len(y):][yo[len(y):] == 2]
  np.testing.assert_allclose(singles, np.broadcast_to(x[y == 2], singles.shape))


def test_one_class_and_empty_clients_stay_unchanged():
  x, y = _data(3, [12], 3)
  xo, yo, _ = _run('smote', x, y, 2)
  assert len(yo) == 12
  xo, yo, _ = _run('smote', x[:0], y[:0], 2, pad=4, max_class_count=4)
  assert len(yo) == 0


@pytest.mark.parametrize('name', ['smote', 'random_over'])
def test_padded_client_gives_the_unpadded_result(name):
  x, y = _data(4, [30, 6], 5)
  a = _run(name, x, y, 2, max_class_count=30)
  b = _run(name, x, y, 2, pad=7, max_class_count=30)
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
  np.testing.assert_array_equal(a[1], b[1])


def test_vmap_over_clients_matches_single_calls():
  x1, y1 = _data(5, [30, 6], 5)
  x2, y2 = _data(6, [18, 18], 5)
  r = resample.make_resampler('smote', num_classes=2, capacity=36)
  xs, ys, ms = np.stack([x1, x2]), np.stack([y1, y2]), np.ones((2, 36), bool)
  keys = jax.random.split(jax.random.key(0), 2)
  out = jax.vmap(r.resample)(keys, xs, ys, ms)
  for c in range(2):
    single = r.resample(keys[c], xs[c], ys[c], ms[c])
    for a, b in zip(out, single):
      np.testing.assert_allclose(np.asarray(a[c]), np.asarray(b), rtol=1e-6)


def test_unknown_resampler_names_the_choices():
  with pytest.raises(ValueError, match='allowed: none, random_over, smote'):
    resample.make_resampler('nope', num_classes=2, capacity=4)
