"""Masked nearest neighbours by one matmul and `lax.top_k`."""
import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of the real rows of x[N, D] (mask bool[N]) as float32[D]; zeros when none."""
  w = mask.astype(jnp.float32)[:, None]
  return jnp.sum(x.astype(jnp.float32) * w, axis=0) / jnp.maximum(jnp.sum(w), 1.0)


def pairwise_sq_distances(a: jax.Array, b: jax.Array, a_mask: jax.Array) -> jax.Array:
  """Squared Euclidean distances |a|^2 + |b|^2 - 2ab, clipped at 0, in a stable form.

  Both sides are first centred on the mean of a's real rows (distances do not
  change), so a common offset in the features (e.g. all-positive latents) does
  not cancel catastrophically in float32; the matmul runs at HIGHEST precision
  on every platform (no TF32-class passes on GPUs/TPUs), whatever
  `jax.default_matmul_precision` says.

  Args:
    a: float[N, D]; b: float[M, D]; a_mask: bool[N], a's real rows (padding
      rows may hold anything finite).

  Returns:
    float32[N, M].
  """
  mu = masked_mean(a, a_mask)
  a = a.astype(jnp.float32) - mu
  b = b.astype(jnp.float32) - mu
  aa = jnp.sum(a * a, axis=-1)[:, None]
  bb = jnp.sum(b * b, axis=-1)[None, :]
  ab = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(aa + bb - 2.0 * ab, 0.0)


def masked_knn(sq_dist: jax.Array, allowed: jax.Array, k: int):
  """k nearest allowed neighbours of every row.

  Args:
    sq_dist: float32[N, M] squared distances.
    allowed: bool[N, M], which pairs may be neighbours (mask out padding,
      self-pairs, other classes...).
    k: neighbours wanted (static); clipped to M.

  Returns:
    idx: int32[N, k'] neighbour indices, nearest first (k' = min(k, M)); entries
      beyond `count` are arbitrary and must be ignored.
    count: int32[N] how many of the k' entries are real neighbours
      (= min(k, number of allowed pairs in the row)).
  """
  k = min(k, sq_dist.shape[1])
  d = jnp.where(allowed, sq_dist, jnp.inf)
  neg, idx = jax.lax.top_k(-d, k)
  count = jnp.sum(jnp.isfinite(neg), axis=-1).astype(jnp.int32)
  return idx.astype(jnp.int32), count


def knn_among(sq_dist: jax.Array, alive: jax.Array, k: int):
  """k nearest alive rows of every row of a square distance matrix, itself excluded.

  sq_dist: float32[N, N]; alive: bool[N]. Returns `masked_knn`'s (idx[N, k'], count[N]).
  """
  n = sq_dist.shape[0]
  allowed = alive[:, None] & alive[None, :] & ~jnp.eye(n, dtype=bool)
  return masked_knn(sq_dist, allowed, k)
