import jax
import numpy as np
import pytest

from fedar_jax import client_blocks
from fedar_jax import fedar_round
from fedar_jax.data import federated
from tests import helpers

SIZES = (40, 25, 33, 12, 30, 18, 27)


def test_block_layout():
  assert client_blocks.block_layout(10, 0) == (1, 10)
  assert client_blocks.block_layout(10, 4) == (3, 4)
  assert client_blocks.block_layout(1001, 1000) == (2, 501)
  assert client_blocks.block_layout(10, 3, devices=8) == (2, 8)
  assert client_blocks.block_layout(100, 10, devices=8) == (7, 16)
  for slots, block, dev in [(7, 3, 1), (10000, 1000, 8), (37, 5, 4), (5, 100, 2)]:
    n, size = client_blocks.block_layout(slots, block, dev)
    assert n * size >= slots and size % dev == 0 and (n - 1) * size < slots


def _padded(clients, spec):
  return federated.append_empty_clients(clients, fedar_round.data_rows(spec, clients.x.shape[0]),
                              clients.x.shape[0])


def test_blocked_round_equals_unblocked_and_compiles_once(block=3):
  clients, test = helpers.unequal_clients(sizes=SIZES)
  spec, state = helpers.small_spec(clients, epochs=1)
  hp = fedar_round.HParams.create(threshold=1.5, learning_rate=0.01, seed=3)
  blocked_spec = spec._replace(num_clients=len(SIZES), client_block=block)
  padded = _padded(clients, blocked_spec)
  # 3 blocks of 3: padding clients and several blocks really are in play.
  assert fedar_round.slot_layout(blocked_spec, len(SIZES)) == (3, 3) and padded.x.shape[0] == 9
  traces = []
  inner = fedar_round.make_round(blocked_spec)
  blocked = jax.jit(lambda *a: (traces.append(1), inner(*a))[1])
  plain = jax.jit(fedar_round.make_round(spec))
  s_b, s_p = state, state
  for _ in range(2):
    s_b, o_b = blocked(s_b, padded, test, hp)
    s_p, o_p = plain(s_p, clients, test, hp)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0),
                 s_b.params, s_p.params)
    real = np.asarray(o_b.client_index) >= 0
    np.testing.assert_array_equal(np.asarray(o_b.client_index)[real], np.arange(len(SIZES)))
    np.testing.assert_array_equal(np.asarray(o_b.clients.n_real)[real], o_p.clients.n_real)
    np.testing.assert_array_equal(np.asarray(o_b.clients.resampled)[real],
                                  o_p.clients.resampled)
    np.testing.assert_array_equal(o_b.metrics['confusion'], o_p.metrics['confusion'])
  assert len(traces) == 1 and blocked._cache_size() == 1
  assert not np.allclose(jax.tree.leaves(s_b.params)[0], jax.tree.leaves(state.params)[0])


def test_round_rejects_unpadded_data_for_blocks():
  clients, test = helpers.unequal_clients(sizes=SIZES)
  spec, state = helpers.small_spec(clients, epochs=1)
  step = fedar_round.make_round(spec._replace(client_block=3))
  with pytest.raises(ValueError, match='needs 9'):
    jax.eval_shape(step, state, clients, test, fedar_round.HParams.create(1.5, 1e-2, 0))
