import jax
import jax.numpy as jnp
import numpy as np

from fedar_jax import fedar_round
from fedar_jax import sampling
from tests import helpers

SIZES = (40, 25, 33, 12, 30, 18, 27)


def test_clients_per_round_from_count_or_fraction():
  assert sampling.clients_per_round(100) == 100
  assert sampling.clients_per_round(100, count=7) == 7
  assert sampling.clients_per_round(10, count=70) == 10
  assert sampling.clients_per_round(100, fraction=0.1) == 10
  assert sampling.clients_per_round(100, fraction=0.001) == 1


def test_sample_is_deterministic_distinct_and_varies_by_round_and_seed():
  draw = jax.jit(sampling.sample_clients, static_argnums=(2, 3))
  a = np.asarray(draw(jnp.int32(0), jnp.int32(5), 50, 10))
  np.testing.assert_array_equal(a, draw(jnp.int32(0), jnp.int32(5), 50, 10))
  assert len(set(a.tolist())) == 10 and a.min() >= 0 and a.max() < 50
  np.testing.assert_array_equal(a, np.sort(a))
  others = [np.asarray(draw(jnp.int32(s), jnp.int32(r), 50, 10)) for s, r in
            [(0, 6), (1, 5)]]
  assert all(not np.array_equal(a, o) for o in others)
  # Every client gets picked over enough rounds (no client is starved).
  seen = np.concatenate([np.asarray(draw(jnp.int32(0), jnp.int32(r), 50, 10))
                         for r in range(40)])
  assert set(seen.tolist()) == set(range(50))


def test_sampled_round_trains_only_the_sampled_clients():
  clients, test = helpers.unequal_clients(sizes=SIZES)
  spec, state = helpers.small_spec(clients, epochs=1)
  hp = fedar_round.HParams.create(threshold=1.5, learning_rate=0.01, seed=4)
  m = 3
  step = jax.jit(fedar_round.make_round(spec._replace(clients_per_round=m, client_block=2)))
  plain = jax.jit(fedar_round.make_round(spec))
  for r in range(2):
    st = state._replace(round=jnp.int32(r))
    chosen = np.asarray(sampling.sample_clients(hp.seed, st.round, len(SIZES), m))
    # Unsampled clients hold NaN: any weight on them would poison the average.
    poisoned = clients._replace(x=clients.x.copy())
    poisoned.x[np.setdiff1d(np.arange(len(SIZES)), chosen)] = np.nan
    s_sampled, out = step(st, poisoned, test, hp)
    subset = jax.tree.map(lambda a: a[chosen], clients)
    s_ref, ref = plain(st, subset, test, hp)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0),
                 s_sampled.params, s_ref.params)
    assert int(out.metrics['dropped_clients']) == 0
    index = np.asarray(out.client_index)
    np.testing.assert_array_equal(index[index >= 0], chosen)
    np.testing.assert_array_equal(np.asarray(out.clients.n_real)[index >= 0], ref.clients.n_real)
