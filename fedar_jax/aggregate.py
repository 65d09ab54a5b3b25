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
