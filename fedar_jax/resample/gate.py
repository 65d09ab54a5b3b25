"""The FedAR pre-training check: per-client imbalance ratio and the resampling gate.

Everything here is traced, so one compiled round serves every threshold.
"""
import jax
import jax.numpy as jnp


def class_counts(y: jax.Array, mask: jax.Array, num_classes: int) -> jax.Array:
  """Counts real samples per class.

  Args:
    y: int32[N] labels in [0, num_classes).
    mask: bool[N], True for real rows.
    num_classes: K (static).

  Returns:
    int32[K] counts.
  """
  onehot = jax.nn.one_hot(y, num_classes, dtype=jnp.int32)
  return jnp.sum(onehot * mask[:, None].astype(jnp.int32), axis=0)


def imbalance_ratio(counts: jax.Array) -> jax.Array:
  """IR = largest class count / smallest non-empty class count.

  Args:
    counts: int[K] per-class counts of one client.

  Returns:
    float32 scalar. 1.0 for a client with zero or one non-empty class, so the
    gate never fires for it: one class leaves nothing to resample. (The
    partition summary, data/summary.py, reports that client's IR as inf.)
  """
  counts = counts.astype(jnp.float32)
  present = counts > 0
  largest = jnp.max(counts)
  smallest = jnp.min(jnp.where(present, counts, jnp.inf))
  return jnp.where(jnp.any(present), largest / smallest, 1.0)


def fedar_gate(ir: jax.Array, threshold: jax.Array) -> jax.Array:
  """FedAR's rule: resample iff the client's IR exceeds the threshold (bool scalar)."""
  return ir > threshold


def pad_rows(x: jax.Array, y: jax.Array, mask: jax.Array, capacity: int):
  """Pads (x[N,...], y[N], mask[N]) with masked-out rows to `capacity` rows."""
  extra = capacity - x.shape[0]
  if extra < 0:
    raise ValueError(f'capacity {capacity} is smaller than the {x.shape[0]} input rows')
  x = jnp.concatenate([x, jnp.zeros((extra,) + x.shape[1:], x.dtype)])
  y = jnp.concatenate([y, jnp.zeros((extra,), y.dtype)])
  mask = jnp.concatenate([mask, jnp.zeros((extra,), bool)])
  return x, y, mask


def select(gate: jax.Array, resampled, original):
  """Picks the resampled (x, y, mask) where `gate` holds, else the original padded to match."""
  capacity = resampled[0].shape[0]
  original = pad_rows(*original, capacity)
  return jax.tree.map(lambda r, o: jnp.where(gate, r, o), resampled, original)
