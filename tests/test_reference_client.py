"""The compiled client update vs the independent reference one, once per resampler
(the whole round for test_fedar_round.ROUND_RESAMPLERS is in test_fedar_round.py), and the NumPy samplers vs imbalanced-learn."""
import jax
import numpy as np
import pytest
from imblearn.over_sampling import SMOTE

from fedar_jax import precision
from fedar_jax import reference
from fedar_jax import resample
from fedar_jax import fedar_round
from tests import helpers, test_fedar_round

OTHERS = [n for n in resample.RESAMPLER_NAMES if n not in test_fedar_round.ROUND_RESAMPLERS]


@pytest.mark.parametrize('name', OTHERS)
def test_client_update_equals_reference_for_every_sampler(name):
  # One client (the round's batching and FedAvg are checked in test_fedar_round.py).
  clients, _ = helpers.unequal_clients(sizes=(30,), d=4, ratio=4.0)
  spec, state = helpers.small_spec(clients, resampler=name, epochs=1)
  spec = spec._replace(matmul_precision='highest')
  args = (state.params, jax.random.key(2), clients.x[0], clients.y[0], clients.mask[0],
          np.float32(1.5), np.float32(0.02))
  update = jax.jit(precision.with_matmul_precision(fedar_round.local_update_fn(spec), 'highest'))
  p_fast, s_fast = jax.device_get(update(*args))
  with jax.default_matmul_precision('highest'):
    p_ref, s_ref = reference.reference_client_update(spec, *args)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), p_fast, p_ref)
  for field in ('ir', 'resampled', 'n_real', 'n_train', 'fallback'):
    np.testing.assert_array_equal(getattr(s_fast, field), getattr(s_ref, field), err_msg=field)
  np.testing.assert_allclose(s_fast.loss, s_ref.loss, rtol=1e-4, atol=1e-5)
  assert bool(s_fast.resampled)
  if name not in ('tomek', 'cnn', 'oss', 'ncr', 'enn', 'renn', 'allknn'):  # may keep all rows
    assert s_fast.n_train != s_fast.n_real


def _client(counts, d=3, n_pad=4, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int32)
  x = (rng.normal(size=(len(y), d)) + y[:, None]).astype(np.float32)
  x = np.concatenate([x, np.full((n_pad, d), 5.0, np.float32)])
  y = np.concatenate([y, np.zeros(n_pad, np.int32)])
  return x, y, np.arange(len(y)) < sum(counts)


@pytest.mark.parametrize('name', ['smote', 'random_over'])
@pytest.mark.parametrize('counts', [[30, 6], [25, 9, 3]])
def test_numpy_sampler_equals_engine(name, counts):
  x, y, m = _client(counts)
  r = resample.make_resampler(name, num_classes=len(counts), capacity=len(y))
  key = jax.random.key(4)
  ours = jax.device_get(jax.jit(r.resample)(key, x, y, m))
  ref = reference.NUMPY_RESAMPLERS[name](key, x, y, m, **dict(r.bound))
  np.testing.assert_array_equal(ours[2], ref[2])
  np.testing.assert_array_equal(ours[1][ours[2]], ref[1][ref[2]])
  np.testing.assert_allclose(ours[0][ours[2]], ref[0][ref[2]], atol=1e-6)
  assert bool(ours[3]) == ref[3] == (name == 'smote' and min(counts) <= 5)


def test_numpy_smote_points_lie_on_imblearn_segments_and_counts_match():
  # Same rules as imbalanced-learn: counts to the majority; every new row on a
  # segment from a seed to one of its k = 5 nearest same-class rows.
  x, y, m = _client([40, 12, 8], n_pad=0)
  r = resample.make_resampler('smote', num_classes=3, capacity=len(y))
  xo, yo, mo, _ = reference.np_smote(jax.random.key(0), x, y, m, **dict(r.bound))
  _, y_imb = SMOTE(random_state=0).fit_resample(x, y)
  np.testing.assert_array_equal(np.bincount(yo[mo]), np.bincount(y_imb))
  for p, c in zip(xo[len(y):][mo[len(y):]], yo[len(y):][mo[len(y):]]):
    members = x[y == c]
    d = np.sum((members[:, None] - members[None]) ** 2, -1)
    ok = False
    for i in range(len(members)):
      for j in np.argsort(d[i])[1:6]:
        seg = members[j] - members[i]
        t = np.dot(p - members[i], seg) / np.dot(seg, seg)
        ok |= 0 <= t <= 1 and np.allclose(members[i] + t * seg, p, atol=1e-5)
    assert ok
