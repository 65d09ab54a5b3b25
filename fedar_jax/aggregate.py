"""Server aggregation: FedAvg."""
import jax
import jax.numpy as jnp


def fedavg(client_params, weights: jax.Array):
  """Weighted average of client parameters.

  Args:
    client_params: pytree whose leaves have a leading client axis [C, ...].
    weights: float/int[C], each client's number of real (pre-resampling)
      samples; resampled copies never add weight.

  Returns:
    The averaged pytree (leaves without the client axis). If every weight is
    zero, the plain mean.
  """
  w = weights.astype(jnp.float32)
  total = jnp.sum(w)
  w = jnp.where(total > 0, w / jnp.maximum(total, 1e-30), 1.0 / w.shape[0])
  return jax.tree.map(lambda leaf: jnp.tensordot(w, leaf, axes=1).astype(leaf.dtype),
                      client_params)


def finite_updates(client_params) -> jax.Array:
  """bool[C]: True where every parameter of the client's update is finite (no NaN/inf).

  client_params: pytree whose leaves have a leading client axis [C, ...].
  """
  leaves = jax.tree.leaves(client_params)
  ok = [jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1) for leaf in leaves]
  return jnp.stack(ok).all(axis=0)


def weighted_sum(client_params, weights: jax.Array):
  """Sum of client parameters weighted by `weights` (float32[C]), as float32.

  A client with weight 0 contributes exactly nothing, even if its parameters
  are NaN/inf (`jnp.where`, not a multiplication by 0). FedAvg over client
  blocks is the running sum of these partial sums divided by the summed weight.
  """
  w = weights.astype(jnp.float32)
  use = w > 0

  def leaf_sum(leaf):
    shape = (-1,) + (1,) * (leaf.ndim - 1)
    terms = jnp.where(use.reshape(shape), leaf.astype(jnp.float32) * w.reshape(shape), 0.0)
    return jnp.sum(terms, axis=0)

  return jax.tree.map(leaf_sum, client_params)
