"""Per-round client sampling with keys folded from (seed, round).

The sample depends only on (seed, round, number of clients, clients per
round), so a run and its resumption, on any number of devices or hosts, pick
the same clients. `clients_per_round` is plain Python (the flag validation
uses it without loading JAX); `sample_clients` imports JAX when traced.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
  import jax

# Folded into the seed key before the round, so sampling keys never coincide
# with client keys (those fold the round, then the client id, into the seed key).
_STREAM = 0x7FFFFFFF


def clients_per_round(num_clients: int, count: int = 0, fraction: float = 0.0) -> int:
  """Static number of clients per round: `count` if > 0, else round(fraction * C) (>= 1)
  if fraction > 0, else all C (0 means "no sampling" to callers that check for it)."""
  if count > 0:
    return min(count, num_clients)
  if fraction > 0:
    return max(1, min(num_clients, int(round(fraction * num_clients))))
  return num_clients


def round_key(seed: jax.Array, round_index: jax.Array) -> jax.Array:
  """The PRNG key round `round_index`'s sample is drawn from (seed, a stream tag, round)."""
  import jax
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _STREAM), round_index)


def sample_clients(seed: jax.Array, round_index: jax.Array, num_clients: int,
                   count: int) -> jax.Array:
  """`count` distinct client indices in [0, num_clients), sorted: int32[count].

  seed, round_index: int32 scalars (may be traced); num_clients, count: static.
  """
  import jax
  import jax.numpy as jnp
  chosen = jax.random.permutation(round_key(seed, round_index), num_clients)[:count]
  return jnp.sort(chosen).astype(jnp.int32)
