"""Aggregators vs brute-force NumPy (reference.np_aggregate), with padded/unsampled
(weight 0, NaN-filled) client slots that must never count."""
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import aggregate
from fedar_jax import methods
from fedar_jax import reference

ROBUST = [a for a in methods.AGGREGATORS if a != 'mean']


def _slots(seed=0, p=9, d=7):
  """Client models as a pytree [P, ...], weights with 3 unused slots holding NaN/huge values."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(p, d)).astype(np.float32)
  w = rng.integers(1, 20, size=p).astype(np.float32)
  w[[1, 4, 8]] = 0
  x[1], x[4], x[8] = np.nan, 1e6, -np.inf
  tree = {'a': x[:, :3].reshape(p, 3, 1), 'b': x[:, 3:]}
  return tree, x, w


@pytest.mark.parametrize('name', ROBUST)
@pytest.mark.parametrize('values', [dict(trim_fraction=0.2, byzantine_clients=1, clip_norm=0.5),
                                    dict(trim_fraction=0.0, byzantine_clients=0, clip_norm=10.0)])
def test_robust_aggregator_matches_brute_force_numpy_and_ignores_unused_slots(name, values):
  tree, x, w = _slots()
  g = np.linspace(-1, 1, 7).astype(np.float32)
  p = methods.MethodParams.create(**values)
  out = aggregate.robust(name, tree, jnp.asarray(w), {'a': g[:3].reshape(3, 1), 'b': g[3:]}, p)
  flat = np.concatenate([np.asarray(out['a']).reshape(-1), np.asarray(out['b'])])
  want = reference.np_aggregate(name, x, w, g, p)
  np.testing.assert_allclose(flat, want, atol=1e-5, rtol=1e-5)
  assert np.all(np.isfinite(flat))


def test_trimmed_mean_cuts_floor_fraction_of_used_clients_at_each_end():
  x = np.array([[0.], [1.], [2.], [3.], [100.], [50.]], np.float32)
  w = np.array([1, 1, 1, 1, 1, 0], np.float32)
  p = methods.MethodParams.create(trim_fraction=0.2)
  np.testing.assert_allclose(aggregate.trimmed_mean(x, w > 0, w, None, p), [2.0])  # (1 + 2 + 3) / 3
  np.testing.assert_allclose(aggregate.coordinate_median(x, w > 0, w, None, p), [2.0])


def test_krum_picks_the_planted_honest_client_when_attackers_are_far():
  rng = np.random.default_rng(3)
  honest = rng.normal(scale=0.1, size=(6, 5)).astype(np.float32)
  honest[2] = 0.0  # The planted client, at the honest centre.
  attackers = 50.0 + rng.normal(size=(2, 5)).astype(np.float32)
  x = np.concatenate([attackers[:1], honest, attackers[1:], np.zeros((1, 5), np.float32)])
  w = np.array([5, 5, 5, 5, 5, 5, 5, 5, 0], np.float32)  # Last slot: padding at the centre too.
  p = methods.MethodParams.create(byzantine_clients=2)
  scores = aggregate.krum_scores(x, w > 0, p.byzantine_clients)
  assert int(np.argmin(scores)) == 3 and np.isinf(scores[-1])
  np.testing.assert_array_equal(aggregate.krum(x, w > 0, w, None, p), honest[2])
  mk = aggregate.multi_krum(x, w > 0, w, None, p)
  np.testing.assert_allclose(mk, honest.mean(0), atol=1e-6)


def test_geometric_median_resists_a_far_outlier_and_norm_clip_bounds_each_update():
  x = np.array([[0., 0.], [1., 0.], [0., 1.], [1000., 1000.]], np.float32)
  w = np.ones(4, np.float32)
  gm = aggregate.geometric_median(x, w > 0, w, None, None)
  assert np.linalg.norm(gm) < 1.5
  p = methods.MethodParams.create(clip_norm=1.0)
  out = aggregate.norm_clip(x, w > 0, w, np.zeros(2, np.float32), p)
  assert np.linalg.norm(out) <= 1.0 + 1e-6


def test_weighted_mean_keeps_the_old_model_when_no_weight():
  old = {'w': jnp.arange(3.0)}
  out = aggregate.weighted_mean({'w': jnp.zeros(3)}, jnp.float32(0), old)
  np.testing.assert_array_equal(out['w'], old['w'])
  out = aggregate.weighted_mean({'w': jnp.full(3, 6.0)}, jnp.float32(3), old)
  np.testing.assert_array_equal(out['w'], [2.0, 2.0, 2.0])
