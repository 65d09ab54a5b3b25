"""Per-round client sampling with keys folded from (seed, round).

The sample depends only on (seed, round, number of clients, clients per
round), so a run and its resumption, on any number of devices or hosts, pick
the same clients. `clients_per_round` is plain Python (the flag validation
uses it without loading JAX); `sample_clients` imports JAX when traced.

Two samplers, chosen by the population size C alone (static), so a population
samples the same cohorts whether it is held in memory, streamed or virtual:
  C <= PERMUTATION_MAX_CLIENTS: the first P entries of a random permutation of
    C (O(C) memory and time per round);
  larger C: Floyd's algorithm (`floyd_sample`), O(P) memory and O(P^2) compares
    per round, uniform over the P-subsets like the permutation.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
  import jax

# Folded into the seed key before the round, so sampling keys never coincide
# with client keys (those fold the round, then the client id, into the seed key).
_STREAM = 0x7FFFFFFF
# The stream of the clients evaluated on their own data (--eval_clients).
EVAL_STREAM = 0x7FFFFFFE
# Populations up to this size sample by permutation; larger ones by Floyd's algorithm.
PERMUTATION_MAX_CLIENTS = 2 ** 20

# --client_sampling: uniform draws exactly clients_per_round clients without replacement;
# poisson lets each client join independently with probability q = clients_per_round / C.
MODES = ('uniform', 'poisson')

# A Poisson cohort is padded to the least static size k with P(cohort > k) <= this per round.
POISSON_OVERFLOW = 1e-12


def clients_per_round(num_clients: int, count: int = 0, fraction: float = 0.0) -> int:
  """Static number of clients per round: `count` if > 0, else round(fraction * C) (>= 1)
  if fraction > 0, else all C (0 means "no sampling" to callers that check for it)."""
  if count > 0:
    return min(count, num_clients)
  if fraction > 0:
    return max(1, min(num_clients, int(round(fraction * num_clients))))
  return num_clients


def round_key(seed: jax.Array, round_index: jax.Array, stream: int = _STREAM) -> jax.Array:
  """The PRNG key round `round_index`'s sample is drawn from (seed, the stream tag, round)."""
  import jax
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), stream), round_index)


def sample_clients(seed: jax.Array, round_index: jax.Array, num_clients: int,
                   count: int, stream: int = _STREAM) -> jax.Array:
  """`count` distinct client indices in [0, num_clients), sorted: int32[count].

  seed, round_index: int32 scalars (may be traced); num_clients, count: static.
  stream: the key stream folded into the seed key (`_STREAM` for the training cohort,
  `EVAL_STREAM` for the evaluated clients).
  """
  import jax
  import jax.numpy as jnp
  key = round_key(seed, round_index, stream)
  if num_clients > PERMUTATION_MAX_CLIENTS:
    chosen = floyd_sample(key, num_clients, count)
  else:
    chosen = jax.random.permutation(key, num_clients)[:count]
  return jnp.sort(chosen).astype(jnp.int32)


def binomial_tail(n: int, q: float, k: int) -> float:
  """P(X > k) for X ~ Binomial(n, q) (plain Python, summed in log space)."""
  if k >= n:
    return 0.0
  if q <= 0:
    return 0.0
  if q >= 1:
    return 1.0
  total = 0.0
  for j in range(k + 1, n + 1):
    log_term = (math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
                + j * math.log(q) + (n - j) * math.log1p(-q))
    term = math.exp(log_term)
    total += term
    if j > n * q and term < total * 1e-17:
      break
  return total


def poisson_capacity(num_clients: int, expected: int,
                     overflow: float = POISSON_OVERFLOW) -> int:
  """The static cohort size of Poisson sampling: the least k >= expected with
  P(Binomial(num_clients, expected / num_clients) > k) <= overflow (at most num_clients)."""
  q = expected / num_clients
  k = expected
  while k < num_clients and binomial_tail(num_clients, q, k) > overflow:
    k += 1
  return k


def sample_poisson(seed: jax.Array, round_index: jax.Array, num_clients: int, expected: int,
                   capacity: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Poisson sampling: each client joins with probability expected / num_clients.

  seed, round_index: int32 scalars (may be traced); the rest static. Returns
  (chosen int32[capacity]: the joined clients in increasing order, then 0 in unused
  slots; joined bool[capacity]: the slots that hold a joined client; overflow int32:
  joined clients beyond `capacity`, left out of the round).
  """
  import jax
  import jax.numpy as jnp
  key = round_key(seed, round_index)
  joins = jax.random.uniform(key, (num_clients,)) < expected / num_clients
  count = jnp.sum(joins, dtype=jnp.int32)
  chosen = jnp.nonzero(joins, size=capacity, fill_value=0)[0].astype(jnp.int32)
  return chosen, jnp.arange(capacity) < count, jnp.maximum(count - capacity, 0)


def floyd_sample(key: jax.Array, num_clients: int, count: int) -> jax.Array:
  """`count` distinct ints in [0, num_clients) by Floyd's algorithm: int32[count], unsorted.

  Step i (j = C - P + i) draws t uniform in [0, j] and takes t, or j if t is already
  taken; every P-subset is equally likely. Memory O(P), P steps of O(P) compares.
  num_clients, count: static, count <= num_clients <= 2**31 - 1.
  """
  import jax
  import jax.numpy as jnp
  if not 0 <= count <= num_clients:
    raise ValueError(f'cannot draw {count} distinct clients from {num_clients}')
  tops = jnp.arange(num_clients - count, num_clients, dtype=jnp.int32)  # j of each step
  draws = jax.random.randint(key, (count,), 0, tops + 1, dtype=jnp.int32)

  def step(i, chosen):
    t = draws[i]
    taken = jnp.any(chosen == t)
    return chosen.at[i].set(jnp.where(taken, tops[i], t))

  return jax.lax.fori_loop(0, count, step, jnp.full((count,), -1, jnp.int32))
