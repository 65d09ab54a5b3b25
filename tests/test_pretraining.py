"""--resample_every=once: the pre-training step against the reference loop and against `round`."""
import jax
import numpy as np
import pytest

from fedar_jax import pretraining
from fedar_jax import reference
from fedar_jax import round as round_lib
from tests import helpers


def _assert_round_equal(o_fast, o_slow, s_fast, s_slow):
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0),
               s_fast.params, s_slow.params)
  for name in ('resampled', 'fallback', 'n_real', 'n_train'):
    np.testing.assert_array_equal(getattr(o_fast.clients, name), getattr(o_slow.clients, name))
  np.testing.assert_allclose(o_fast.clients.ir, o_slow.clients.ir, rtol=1e-6)
  np.testing.assert_array_equal(o_fast.metrics['confusion'], o_slow.metrics['confusion'])


@pytest.mark.parametrize('resampler,block', [('smote', 0), ('random_under', 2)])
def test_resample_once_equals_reference_loop(resampler, block):
  clients, test = helpers.unequal_clients()
  spec, state = helpers.small_spec(clients, resampler=resampler)
  spec = spec._replace(client_block=block)
  hp = round_lib.HParams.create(threshold=1.5, learning_rate=0.01, seed=3)
  prepared = jax.jit(pretraining.make_prepare(spec))(clients, hp)
  fast = jax.jit(round_lib.make_round(pretraining.round_spec(spec)))
  slow = reference.make_reference_round(spec, resample_every='once')
  every_round = jax.jit(round_lib.make_round(spec))
  s_fast = s_slow = s_round = state
  for r in range(3):
    s_fast, o_fast = fast(s_fast, prepared, test, hp)
    s_slow, o_slow = slow(s_slow, clients, test, hp)
    s_round, o_round = every_round(s_round, clients, test, hp)
    _assert_round_equal(o_fast, o_slow, s_fast, s_slow)
    assert np.any(o_fast.clients.resampled)  # The gate fired every round (stats reported).
    if r == 0:  # The first round's keys: round 1 equals --resample_every=round.
      _assert_round_equal(o_fast, o_round, s_fast, s_round)
  # Later rounds redraw the resampling with `round` only.
  assert not np.allclose(jax.tree.leaves(s_fast.params)[0], jax.tree.leaves(s_round.params)[0])


def test_prepared_rows_do_not_depend_on_when_they_are_computed():
  clients, test = helpers.unequal_clients()
  spec, _ = helpers.small_spec(clients)
  prepare = jax.jit(pretraining.make_prepare(spec))
  a = prepare(clients, round_lib.HParams.create(1.5, 0.01, 3))
  b = prepare(clients, round_lib.HParams.create(1.5, 0.02, 3))
  c = prepare(clients, round_lib.HParams.create(1.5, 0.01, 4))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(a.x.x, c.x.x)  # The seed draws the synthetic rows.
