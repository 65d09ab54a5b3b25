import jax
import jax.numpy as jnp
import numpy as np

from fedar_jax import client
from fedar_jax import models


def _setup(n=20, d=4, k=2):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = rng.integers(0, k, n).astype(np.int32)
  model = models.MLP(num_classes=k, hidden=(5,))
  return model, model.init(jax.random.key(0), x[:1]), x, y


def test_masked_cross_entropy_ignores_padding():
  logits = jnp.array([[2.0, 0.0], [0.0, 2.0], [9.0, -9.0]])
  y = jnp.array([0, 0, 1])
  full = client.masked_cross_entropy(logits[:2], y[:2], jnp.ones(2, bool))
  masked = client.masked_cross_entropy(logits, y, jnp.array([True, True, False]))
  np.testing.assert_allclose(full, masked, rtol=1e-6)
  assert float(client.masked_cross_entropy(logits, y, jnp.zeros(3, bool))) == 0.0


def test_client_without_real_rows_keeps_parameters():
  model, params, x, y = _setup()
  new, loss = client.local_train(model.apply, params, jax.random.key(1), x, y,
                                 np.zeros(len(y), bool), learning_rate=0.1, epochs=2,
                                 batch_size=4)
  jax.tree.map(np.testing.assert_array_equal, new, params)


def test_padded_rows_train_like_real_data_without_nan():
  model, params, x, y = _setup()
  a, _ = client.local_train(model.apply, params, jax.random.key(1), x, y, np.ones(20, bool),
                            learning_rate=0.05, epochs=3, batch_size=8)
  xp = np.concatenate([x, np.zeros((13, 4), np.float32)])
  yp = np.concatenate([y, np.zeros(13, np.int32)])
  mp = np.arange(33) < 20
  b, loss = client.local_train(model.apply, params, jax.random.key(1), xp, yp, mp,
                               learning_rate=0.05, epochs=3, batch_size=8)
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(b))
  logits = model.apply(b, x)
  before = client.masked_cross_entropy(model.apply(params, x), y, np.ones(20, bool))
  assert float(client.masked_cross_entropy(logits, y, np.ones(20, bool))) < float(before)


def test_training_reduces_loss():
  model, params, x, y = _setup(n=64)
  new, loss = client.local_train(model.apply, params, jax.random.key(2), x, y,
                                 np.ones(64, bool), learning_rate=0.05, epochs=20, batch_size=16)
  m = np.ones(64, bool)
  assert float(client.masked_cross_entropy(model.apply(new, x), y, m)) < float(
      client.masked_cross_entropy(model.apply(params, x), y, m))


def test_epoch_order_is_the_stable_argsort_of_the_draws():
  # Draws with ties (few distinct values), padding anywhere, and M on both sides of the
  # packed-key limit (511 packs, 512 falls back to argsort).
  rng = np.random.default_rng(3)
  order = jax.jit(client.epoch_order)
  for m in (40, 511, 512):
    u = rng.integers(0, 8, m) * 2.0**-3 + rng.integers(0, 2, m) * (1 - 2.0**-23 - 0.875)
    u = jnp.asarray(u, jnp.float32)
    for mask in (np.ones(m, bool), rng.random(m) < 0.7, np.zeros(m, bool)):
      want = np.argsort(np.where(mask, np.asarray(u), 2.0), kind='stable')
      np.testing.assert_array_equal(order(u, jnp.asarray(mask)), want)
