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


def _chi_square(counts: np.ndarray) -> float:
  expected = counts.mean()
  return float(np.sum((counts - expected) ** 2 / expected))


def test_floyd_sample_is_distinct_in_range_and_deterministic():
  draw = jax.jit(sampling.floyd_sample, static_argnums=(1, 2))
  for n, m in [(1, 1), (5, 5), (50, 10), (2 ** 31 - 1, 300)]:
    a = np.asarray(draw(jax.random.key(3), n, m))
    assert a.dtype == np.int32 and len(set(a.tolist())) == m
    assert a.min() >= 0 and a.max() < n
    np.testing.assert_array_equal(a, draw(jax.random.key(3), n, m))
  assert not np.array_equal(draw(jax.random.key(3), 1000, 10), draw(jax.random.key(4), 1000, 10))


def test_floyd_sample_is_uniform_over_clients():
  # 400 draws of 10 out of 50: each client's count ~ 80; chi-square (49 dof) < 85.4 holds
  # with probability 0.999 for a uniform sampler (the keys are fixed: the test is exact).
  draw = jax.jit(jax.vmap(sampling.floyd_sample, in_axes=(0, None, None)), static_argnums=(1, 2))
  picks = np.asarray(draw(jax.random.split(jax.random.key(0), 400), 50, 10))
  assert _chi_square(np.bincount(picks.ravel(), minlength=50)) < 85.4
  # A biased sampler fails the same bound: the low half picked 1.5x as often.
  biased = np.bincount(picks.ravel(), minlength=50) * np.repeat([1.5, 1.0], 25)
  assert _chi_square(biased) > 85.4


def test_large_population_cohorts_are_uniform_and_o_of_cohort():
  # Above PERMUTATION_MAX_CLIENTS the cohort comes from Floyd's algorithm (no [C] array:
  # C = 2**31 - 1 would be 8 GiB). 20 rounds of 1,000 in 20 equal buckets of the ids:
  # chi-square (19 dof) < 43.8 with probability 0.999.
  n = 2 ** 31 - 1
  draw = jax.jit(sampling.sample_clients, static_argnums=(2, 3))
  rounds = [np.asarray(draw(jnp.int32(1), jnp.int32(r), n, 1000)) for r in range(20)]
  for a in rounds:
    assert len(set(a.tolist())) == 1000 and a.min() >= 0 and a.max() < n
    np.testing.assert_array_equal(a, np.sort(a))
  buckets = np.bincount(np.concatenate(rounds) // -(-n // 20), minlength=20)
  assert _chi_square(buckets) < 43.8
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(1), sampling._STREAM), 0)
  np.testing.assert_array_equal(rounds[0], np.sort(sampling.floyd_sample(key, n, 1000)))


def test_sampler_is_chosen_by_population_size_alone():
  # Populations up to PERMUTATION_MAX_CLIENTS keep the permutation's cohorts.
  n = sampling.PERMUTATION_MAX_CLIENTS
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(2), sampling._STREAM), 7)
  np.testing.assert_array_equal(sampling.sample_clients(jnp.int32(2), jnp.int32(7), n, 5),
                                np.sort(jax.random.permutation(key, n)[:5]))
  np.testing.assert_array_equal(sampling.sample_clients(jnp.int32(2), jnp.int32(7), n + 1, 5),
                                np.sort(sampling.floyd_sample(key, n + 1, 5)))


def test_eval_stream_differs_from_the_training_stream():
  train = sampling.sample_clients(jnp.int32(0), jnp.int32(3), 1000, 20)
  evaluated = sampling.sample_clients(jnp.int32(0), jnp.int32(3), 1000, 20,
                                      stream=sampling.EVAL_STREAM)
  assert not np.array_equal(train, evaluated)
