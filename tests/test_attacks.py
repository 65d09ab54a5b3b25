"""Attackers: one shared target class, attacks on synthetic data, and the scale attack
(model replacement) in the round vs the reference loop."""
import jax
import numpy as np

from fedar_jax import methods
from fedar_jax import reference
from fedar_jax import fedar_round
from fedar_jax.config import RunConfig
from fedar_jax.data import load
from fedar_jax.data import partition
from tests import helpers

SYN = dict(num_clients=10, samples_per_client=40, feature_dim=4, test_per_class=5,
           num_classes=3, imbalance_ratio=3.0, attacker_fraction=0.3)


def test_skew_attackers_on_synthetic_data_all_inflate_the_shared_target():
  cfg = RunConfig(**SYN, attack_target=2, attack_ratio=10.0)
  data = load.load_federated(cfg)
  clean = load.load_federated(cfg.replace(attacker_fraction=0.0))
  assert data.attackers.sum() == 3
  for c in range(10):
    counts = np.bincount(data.clients.y[c][data.clients.mask[c]], minlength=3)
    if data.attackers[c]:
      # All of its class-2 rows, and count(2) // 10 (at least 1) of each other class.
      full = np.bincount(clean.clients.y[c][clean.clients.mask[c]], minlength=3)
      assert counts[2] == full[2] and counts[0] == counts[1] == max(full[2] // 10, 1)
    else:
      np.testing.assert_array_equal(data.clients.x[c], clean.clients.x[c])


def test_default_target_is_one_class_from_the_data_seed_and_label_flip_on_synthetic():
  targets = {partition.attack_target(s, 3) for s in range(20)}
  assert targets == {0, 1, 2} and partition.attack_target(5, 3) == partition.attack_target(5, 3)
  assert partition.attack_target(5, 3, target=1) == 1
  cfg = RunConfig(**SYN, attack='label_flip')
  data, clean = load.load_federated(cfg), load.load_federated(cfg.replace(attacker_fraction=0))
  c = int(np.flatnonzero(data.attackers)[0])
  np.testing.assert_array_equal(data.clients.y[c], (clean.clients.y[c] + 1) % 3)


def test_scale_attack_round_equals_reference_and_scales_the_attackers_update():
  clients, test = helpers.unequal_clients(sizes=(30, 12, 22, 16))
  spec, state = helpers.small_spec(clients, resampler='none', epochs=1)
  attackers = np.array([False, True, False, False])
  p = methods.MethodParams.create(attack_scale=4.0)
  hp = fedar_round.HParams.create(1.5, 0.05, 3, p, attackers)
  fast, _ = jax.jit(fedar_round.make_round(spec))(state, clients, test, hp)
  slow, _ = reference.make_reference_round(spec)(state, clients, test, hp)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), fast.params,
               slow.params)
  honest, _ = jax.jit(fedar_round.make_round(spec))(state, clients, test, hp._replace(
      attackers=np.zeros(4, bool)))
  # FedAvg is linear: the attacker moves the mean by (4 - 1) * w_1 / sum(w) * its update.
  w = clients.mask.sum(1)
  shift = jax.tree.map(lambda a, b: a - b, fast.params, honest.params)
  assert max(float(np.abs(l).max()) for l in jax.tree.leaves(shift)) > 1e-4
  one = jax.tree.map(lambda a: a[1], jax.vmap(
      lambda k, x, y, m: fedar_round.local_update_fn(spec, p)(state.params, k, x, y, m, 1.5, 0.05)
  )(fedar_round.client_keys(3, 0, clients.client_id), clients.x, clients.y, clients.mask)[0])
  want = jax.tree.map(lambda q, g: 3.0 * w[1] / w.sum() * (q - g), one, state.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), shift, want)
