"""A client whose update is NaN/inf is left out of FedAvg and counted; the model stays finite."""
import jax
import numpy as np

from fedar_jax import fedar_round
from tests import helpers


def _finite(params):
  return all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))


def test_nan_client_is_dropped_and_counted():
  clients, test = helpers.unequal_clients()
  spec, state = helpers.small_spec(clients, epochs=1)
  hp = fedar_round.HParams.create(threshold=1.5, learning_rate=0.01, seed=1)
  step = jax.jit(fedar_round.make_round(spec._replace(client_block=2)))
  faulty = clients._replace(x=clients.x.copy())
  faulty.x[1, 3] = np.nan  # one real row of client 1: its whole update becomes NaN
  without = clients._replace(mask=clients.mask.copy())
  without.mask[1] = False  # the same round with client 1 contributing nothing
  s_f, o_f = step(state, faulty, test, hp)
  s_w, o_w = step(state, without, test, hp)
  assert int(o_f.metrics['dropped_clients']) == 1
  assert int(o_w.metrics['dropped_clients']) == 0
  assert _finite(s_f.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=0),
               s_f.params, s_w.params)
  # Two more rounds: the fault keeps being dropped, the model keeps training.
  for _ in range(2):
    s_next, o_f = step(s_f, faulty, test, hp)
    assert int(o_f.metrics['dropped_clients']) == 1 and _finite(s_next.params)
    assert not np.allclose(jax.tree.leaves(s_next.params)[0], jax.tree.leaves(s_f.params)[0])
    s_f = s_next


def test_all_clients_non_finite_keeps_the_model():
  clients, test = helpers.unequal_clients()
  spec, state = helpers.small_spec(clients, epochs=1)
  step = jax.jit(fedar_round.make_round(spec))
  faulty = clients._replace(x=np.where(clients.mask[..., None], np.inf, clients.x)
                            .astype(np.float32))
  s, out = step(state, faulty, test, fedar_round.HParams.create(1.5, 0.01, 0))
  assert int(out.metrics['dropped_clients']) == clients.x.shape[0]
  jax.tree.map(np.testing.assert_array_equal, s.params, state.params)
  assert int(s.round) == 1
