import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import client
from fedar_jax import for_each_client
from fedar_jax import fedar_round
from fedar_jax import pretraining
from fedar_jax import sharding
from fedar_jax.data import federated
from tests import helpers

SIZES = (40, 25, 33, 12, 30, 18, 27)


def test_block_layout():
  assert for_each_client.block_layout(10, 0) == (1, 10)
  assert for_each_client.block_layout(10, 4) == (3, 4)
  assert for_each_client.block_layout(1001, 1000) == (2, 501)
  assert for_each_client.block_layout(10, 3, devices=8) == (2, 8)
  assert for_each_client.block_layout(100, 10, devices=8) == (7, 16)
  for slots, block, dev in [(7, 3, 1), (10000, 1000, 8), (37, 5, 4), (5, 100, 2)]:
    n, size = for_each_client.block_layout(slots, block, dev)
    assert n * size >= slots and size % dev == 0 and (n - 1) * size < slots


def test_run_keeps_slot_order_and_puts_slot_s_in_block_s_mod_blocks():
  slots = jnp.arange(12, dtype=jnp.float32)
  # Per slot: its value squared and the first slot of its block; sums: the block totals.
  block_sum = lambda block, outs: (jnp.sum(outs), (outs, jnp.broadcast_to(block[0], outs.shape)))
  for blocks in (1, 3, 4):
    total, (squares, first) = for_each_client.run(
        lambda v: v * v, slots, num_blocks=blocks, block_sum=block_sum, sum_init=jnp.float32(0))
    np.testing.assert_array_equal(squares, np.arange(12) ** 2)
    np.testing.assert_array_equal(first, np.arange(12) % blocks)
    assert float(total) == float(np.sum(np.arange(12) ** 2))
  _, doubled = for_each_client.run(lambda v: 2 * v, slots, num_blocks=4)
  np.testing.assert_array_equal(doubled, 2 * np.arange(12))
  with pytest.raises(ValueError, match='12 client slots do not split into 5 blocks'):
    for_each_client.run(lambda v: v, slots, num_blocks=5)


def test_blocks_for_falls_back_to_one_block_when_the_layout_does_not_tile():
  assert for_each_client.blocks_for(9, 3, None) == 3
  assert for_each_client.blocks_for(10, 3, None) == 1   # 4 blocks of 3 would need 12 slots
  assert for_each_client.blocks_for(10, 0, None) == 1


def test_pretraining_step_runs_in_the_rounds_blocks_on_its_mesh():
  # The pre-training step and the round share one backend: in blocks on a mesh the
  # step's per-slot output is the unblocked one, and each slot is its own client's
  # `prepare` (slot order kept).
  clients, _ = helpers.unequal_clients(sizes=SIZES[:6])
  spec, _ = helpers.small_spec(clients, epochs=1)
  hp = fedar_round.HParams.create(threshold=1.5, learning_rate=0.01, seed=3)
  mesh = sharding.make_mesh(jax.devices()[:1])
  blocked_spec = spec._replace(client_block=2, mesh=mesh)
  assert fedar_round.slot_layout(blocked_spec, 6) == (3, 2)
  plain = jax.jit(pretraining.make_prepare_clients(spec))(clients, hp)
  blocked = jax.jit(pretraining.make_prepare_clients(blocked_spec))(clients, hp)
  jax.tree.map(np.testing.assert_array_equal, blocked, plain)
  fedar = fedar_round.client_pipeline(spec)
  keys = fedar_round.client_keys(hp.seed, jnp.int32(pretraining.ONCE_ROUND), clients.client_id)
  for c in (0, 3, 5):
    (x, y, mask), facts = jax.jit(fedar.prepare)(
        None, jax.random.split(keys[c])[0], clients.x[c], clients.y[c], clients.mask[c],
        hp.threshold)
    slot = jax.tree.map(lambda a, c=c: a[c], blocked)
    np.testing.assert_array_equal(slot.x.x, x)
    np.testing.assert_array_equal(slot.mask, mask)
    jax.tree.map(np.testing.assert_array_equal, slot.x.facts, facts)
  # The round in the same blocks reports the step's facts for every slot.
  state = helpers.small_spec(clients, epochs=1)[1]
  _, out = jax.jit(fedar_round.make_round(pretraining.round_spec(blocked_spec)))(
      state, blocked, helpers.unequal_clients(sizes=SIZES[:6])[1], hp)
  np.testing.assert_array_equal(out.clients.ir, blocked.x.facts.ir)
  np.testing.assert_array_equal(out.clients.n_train, np.sum(blocked.mask, 1))
  assert isinstance(blocked.x, client.PreparedRows)


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
