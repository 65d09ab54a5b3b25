"""Client losses vs their formulas on small logits, reduction to cross-entropy at the neutral
parameter, and the client optimizer / FedProx hooks of local training."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import client
from fedar_jax import losses
from fedar_jax import methods
from fedar_jax import models

LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0], [-1.0, 4.0, 1.0], [0.0, 0.0, 0.0],
                   [9.0, 9.0, 9.0]], np.float32)
Y = np.array([0, 0, 1, 1, 2], np.int32)  # Real rows hold only the classes counted.
MASK = np.array([True, True, True, True, False])  # The last row is padding.
COUNTS = np.array([12.0, 3.0, 0.0], np.float32)  # Class 2 absent from this client.


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _ce(z, y=Y, m=MASK, w=None):
  p = _softmax(np.asarray(z, np.float64))[np.arange(len(y)), y]
  w = np.ones(len(y)) if w is None else w
  return np.sum(-np.log(p) * w * m) / m.sum()


def _loss(name, **values):
  return float(losses.make_loss(name, jnp.asarray(COUNTS), methods.MethodParams.create(**values))(
      jnp.asarray(LOGITS), jnp.asarray(Y), jnp.asarray(MASK)))


def test_each_loss_matches_its_formula():
  z = LOGITS.astype(np.float64)
  pt = _softmax(z)[np.arange(5), Y]
  np.testing.assert_allclose(_loss('ce'), _ce(z), rtol=1e-5)
  focal = np.sum(-(1 - pt) ** 1.5 * np.log(pt) * MASK) / MASK.sum()
  np.testing.assert_allclose(_loss('focal', focal_gamma=1.5), focal, rtol=1e-5)
  beta = 0.9
  w = np.array([(1 - beta) / (1 - beta ** n) if n else 0.0 for n in COUNTS])
  w = w * 2 / w.sum()  # Two present classes, weights normalised to mean 1 over them.
  np.testing.assert_allclose(_loss('class_balanced', cb_beta=beta), _ce(z, w=w[Y]), rtol=1e-5)
  safe = np.where(COUNTS > 0, COUNTS, 1e-8)
  np.testing.assert_allclose(_loss('balanced_softmax'), _ce(z + np.log(safe)), rtol=1e-5)
  np.testing.assert_allclose(_loss('logit_adjusted', la_tau=0.7),
                             _ce(z + 0.7 * np.log(safe / COUNTS.sum())), rtol=1e-5)
  np.testing.assert_allclose(_loss('fedrs', fedrs_alpha=0.3),
                             _ce(z * np.where(COUNTS > 0, 1.0, 0.3)), rtol=1e-5)
  np.testing.assert_allclose(_loss('fedlc', fedlc_tau=0.4), _ce(z - 0.4 * safe ** -0.25),
                             rtol=1e-5)


@pytest.mark.parametrize('name,values', [('focal', dict(focal_gamma=0.0)),
                                         ('class_balanced', dict(cb_beta=0.0)),
                                         ('logit_adjusted', dict(la_tau=0.0)),
                                         ('fedrs', dict(fedrs_alpha=1.0)),
                                         ('fedlc', dict(fedlc_tau=0.0))])
def test_loss_reduces_to_cross_entropy_at_its_neutral_parameter(name, values):
  np.testing.assert_allclose(_loss(name, **values), _loss('ce'), rtol=1e-6)
  assert abs(_loss(name) - _loss('ce')) > 1e-3  # The default parameter does change the loss.


def test_balanced_softmax_is_cross_entropy_for_equal_counts_and_focal_grad_is_finite():
  equal = losses.make_loss('balanced_softmax', jnp.full(3, 5.0), methods.MethodParams.create())
  np.testing.assert_allclose(equal(LOGITS, Y, MASK), _ce(LOGITS), rtol=1e-5)
  sure = jnp.array([[80.0, -80.0, -80.0]])  # p_y rounds to 1 in float32.
  for gamma in (0.0, 2.0):
    g = jax.grad(lambda z: losses.focal(z, jnp.array([0]), jnp.array([True]), gamma))(sure)
    assert np.all(np.isfinite(g))


def _problem():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(20, 4)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  model = models.MLP(num_classes=2, hidden=(5,))
  return model, model.init(jax.random.key(0), x[:1]), x, y, np.ones(20, bool)


def test_fedprox_with_mu_zero_equals_plain_local_training_and_mu_pulls_towards_global():
  model, params, x, y, m = _problem()
  kw = dict(learning_rate=0.05, epochs=3, batch_size=8)
  plain, _ = client.local_train(model.apply, params, jax.random.key(1), x, y, m, **kw)
  zero, _ = client.local_train(model.apply, params, jax.random.key(1), x, y, m, prox_mu=0.0, **kw)
  jax.tree.map(np.testing.assert_array_equal, plain, zero)
  strong, _ = client.local_train(model.apply, params, jax.random.key(1), x, y, m,
                                 prox_mu=jnp.float32(50.0), **kw)
  dist = lambda p: sum(float(jnp.sum((a - b) ** 2)) for a, b in
                       zip(jax.tree.leaves(p), jax.tree.leaves(params)))
  assert dist(strong) < 0.5 * dist(plain)


@pytest.mark.parametrize('name', methods.CLIENT_OPTIMIZERS)
def test_client_optimizers_train_and_differ(name):
  model, params, x, y, m = _problem()
  new, _ = client.local_train(model.apply, params, jax.random.key(1), x, y, m,
                              learning_rate=0.1, epochs=5, batch_size=8, optimizer=name)
  loss = lambda p: float(client.masked_cross_entropy(model.apply(p, x), y, m))
  assert loss(new) < loss(params)
  # sgd's first step is -lr * grad: one full batch, one epoch, compared by hand.
  if name == 'sgd':
    one, _ = client.local_train(model.apply, params, jax.random.key(1), x, y, m,
                                learning_rate=0.1, epochs=1, batch_size=20, optimizer='sgd')
    g = jax.grad(lambda p: client.masked_cross_entropy(model.apply(p, x), y, m))(params)
    jax.tree.map(lambda a, p, d: np.testing.assert_allclose(a, p - 0.1 * d, atol=1e-6),
                 one, params, g)
