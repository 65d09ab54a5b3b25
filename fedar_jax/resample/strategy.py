"""imbalanced-learn's `sampling_strategy='auto'` as traced per-class quantities.

Over-samplers grow every class but the majority up to the majority count;
under-samplers and cleaning rules act on every class but the minority. Ties
for the minority are broken toward the lowest label (imbalanced-learn takes the
label that appears first in `y`).
"""
import jax
import jax.numpy as jnp


def minority_class(counts: jax.Array) -> jax.Array:
  """Label of the smallest non-empty class (int32 scalar; 0 if all are empty)."""
  big = jnp.iinfo(jnp.int32).max
  return jnp.argmin(jnp.where(counts > 0, counts, big)).astype(jnp.int32)


def reference_minority(counts: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
  """The minority class the prototype selectors (NearMiss, CNN, OSS, NCR) measure
  against: imbalanced-learn's `min(Counter(y), key=...)`, i.e. among the classes
  tied at the smallest non-empty count, the one whose first real row comes first
  in y (int32 scalar). Which classes are acted on still follows `not_minority`
  (np.unique order: the lowest tied label is left alone)."""
  n, k = y.shape[0], counts.shape[0]
  first = jnp.full((k,), n, jnp.int32).at[jnp.where(mask, y, k)].min(
      jnp.arange(n, dtype=jnp.int32), mode='drop')
  tied = (counts > 0) & (counts == minority_count(counts))
  return jnp.argmin(jnp.where(tied, first, n + 1)).astype(jnp.int32)


def minority_count(counts: jax.Array) -> jax.Array:
  """Size of the smallest non-empty class (int32 scalar; 0 if all are empty)."""
  return jnp.where(jnp.any(counts > 0), counts[minority_class(counts)], 0).astype(jnp.int32)


def not_minority(counts: jax.Array) -> jax.Array:
  """bool[K]: the classes an under-sampler or cleaning rule acts on ('not minority').

  Empty classes are excluded; a client with a single class has nothing to act on.
  """
  present = counts > 0
  return present & (jnp.arange(counts.shape[0]) != minority_class(counts))


def rank_in_class(y: jax.Array, mask: jax.Array, num_classes: int, priority=None) -> jax.Array:
  """int32[N]: each real row's position within its class, by `priority` then row index.

  With priority None the order is the row order (imbalanced-learn's
  `np.flatnonzero(y == c)`). Padding rows get large ranks.
  """
  n = y.shape[0]
  if priority is None:
    priority = jnp.zeros((n,), jnp.float32)
  group = jnp.where(mask, y, num_classes)
  order = jnp.lexsort((jnp.arange(n), priority, group))
  counts = jnp.sum(jax.nn.one_hot(group, num_classes + 1, dtype=jnp.int32), axis=0)
  start = jnp.cumsum(counts) - counts
  sorted_group = group[order]
  rank_sorted = jnp.arange(n) - start[sorted_group]
  return jnp.zeros((n,), jnp.int32).at[order].set(rank_sorted.astype(jnp.int32))


def row_uniforms(key, n: int) -> jax.Array:
  """float32[n] U[0, 1) draws, row i's from fold_in(key, i): padding a client
  with extra rows leaves the draws of its real rows unchanged."""
  return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(jnp.arange(n))


def weighted_choice(key, weights: jax.Array) -> jax.Array:
  """Index drawn with probability ∝ weights (>= 0, some > 0) by inverse CDF of one
  uniform, so zero-weight rows (padding) never change the draw."""
  cdf = jnp.cumsum(weights)
  u = jax.random.uniform(key) * cdf[-1]
  return jnp.minimum(jnp.searchsorted(cdf, u, side='right'), weights.shape[0] - 1).astype(jnp.int32)
