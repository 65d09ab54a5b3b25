"""Oversamplers: RandomOverSampler and SMOTE (imbalanced-learn semantics).

Layout of every output: the N input rows first (unchanged), then S synthetic
slots, so capacity M = N + S. Synthetic slot j belongs to the class whose
deficit range contains j (classes in label order), exactly filling every
present class up to the majority count (imbalanced-learn's
`sampling_strategy='auto'`). If the deficits exceed S (the static bound was
too small), the slots past S are not generated.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedar_jax.resample import gate
from fedar_jax.resample import neighbors


class SlotPlan(NamedTuple):
  """Which class and seed row each synthetic slot uses.

  cls: int32[S] class of the slot; valid: bool[S] slot is used;
  seed: int32[S] index of the seed row (a real row of class `cls`).
  """
  cls: jax.Array
  valid: jax.Array
  seed: jax.Array


def oversampling_deficits(counts: jax.Array) -> jax.Array:
  """Samples to add per class for sampling_strategy='auto' (int32[K])."""
  return jnp.where(counts > 0, jnp.max(counts) - counts, 0).astype(jnp.int32)


def plan_slots(key, y, mask, deficits, num_slots: int) -> SlotPlan:
  """Assigns synthetic slots to classes by deficit and draws a uniform seed row for each.

  Args:
    key: PRNG key.
    y: int32[N]; mask: bool[N].
    deficits: int32[K] synthetic samples wanted per class.
    num_slots: S (static).
  """
  num_classes = deficits.shape[0]
  counts = gate.class_counts(y, mask, num_classes)
  ends = jnp.cumsum(deficits)
  slot = jnp.arange(num_slots)
  cls = jnp.minimum(jnp.searchsorted(ends, slot, side='right'), num_classes - 1)
  valid = slot < ends[-1]
  # Real rows grouped by class (stable), so class c's members are
  # order[start[c] : start[c] + counts[c]].
  order = jnp.argsort(jnp.where(mask, y, num_classes), stable=True)
  start = jnp.cumsum(counts) - counts
  n = jnp.maximum(counts[cls], 1)
  rank = jnp.minimum(jnp.floor(jax.random.uniform(key, (num_slots,)) * n).astype(jnp.int32), n - 1)
  seed = order[start[cls] + rank]
  return SlotPlan(cls.astype(jnp.int32), valid, seed.astype(jnp.int32))


def same_class_knn(x, y, mask, k: int):
  """k nearest same-class real neighbours of every row, excluding the row itself.

  Returns (idx int32[N, k'], count int32[N]) as `neighbors.masked_knn`.
  """
  n = x.shape[0]
  allowed = (y[:, None] == y[None, :]) & mask[:, None] & mask[None, :] & ~jnp.eye(n, dtype=bool)
  return neighbors.masked_knn(neighbors.pairwise_sq_distances(x, x, mask), allowed, k)


def interpolate(key, x, seed, nn_idx, nn_count, step_size=1.0):
  """Synthetic points x[seed] + u * step_size * (x[nb] - x[seed]), u ~ U[0, 1).

  The neighbour nb is uniform among the seed's `nn_count` neighbours; a seed
  with no neighbour gives a copy of itself.

  Returns float[S, D].
  """
  k_col, k_step = jax.random.split(key)
  s = seed.shape[0]
  cnt = nn_count[seed]
  col = jnp.minimum(jnp.floor(jax.random.uniform(k_col, (s,)) * cnt).astype(jnp.int32),
                    jnp.maximum(cnt - 1, 0))
  nb = jnp.where(cnt > 0, nn_idx[seed, col], seed)
  steps = step_size * jax.random.uniform(k_step, (s, 1))
  base = x[seed]
  return (base + steps * (x[nb] - base)).astype(x.dtype)


def append_rows(x, y, mask, cls, valid, new_x):
  """The N input rows followed by S synthetic slots: x[N+S, D], y[N+S], mask[N+S].

  cls: int[S] class of each slot; valid: bool[S]; new_x: float[S, D] (cast to x's dtype).
  """
  return (jnp.concatenate([x, new_x.astype(x.dtype)]),
          jnp.concatenate([y, cls.astype(y.dtype)]),
          jnp.concatenate([mask, valid]))


def random_over(key, x, y, mask, *, num_classes: int, num_slots: int):
  """RandomOverSampler: duplicates uniformly drawn rows of each minority class.

  Args:
    key: PRNG key. x: float[N, D]; y: int32[N]; mask: bool[N].
    num_classes: K; num_slots: S synthetic slots (static).

  Returns:
    (x[N+S, D], y[N+S], mask[N+S], fallback): fallback is always False.
  """
  counts = gate.class_counts(y, mask, num_classes)
  plan = plan_slots(key, y, mask, oversampling_deficits(counts), num_slots)
  return (*append_rows(x, y, mask, plan.cls, plan.valid, x[plan.seed]), jnp.asarray(False))


def smote(key, x, y, mask, *, num_classes: int, num_slots: int, k_neighbors: int = 5):
  """SMOTE: points on segments from a minority seed row to one of its k nearest same-class rows.

  A class with n <= k_neighbors rows uses its n - 1 neighbours (imbalanced-learn
  raises instead); a class with a single row gets copies of it.

  Args:
    key: PRNG key. x: float[N, D]; y: int32[N]; mask: bool[N].
    num_classes: K; num_slots: S (static); k_neighbors: k (static).

  Returns:
    (x[N+S, D], y[N+S], mask[N+S], fallback): fallback is True where
    imbalanced-learn raises (a class to grow has <= k_neighbors rows).
  """
  k_plan, k_new = jax.random.split(key)
  counts = gate.class_counts(y, mask, num_classes)
  deficits = oversampling_deficits(counts)
  plan = plan_slots(k_plan, y, mask, deficits, num_slots)
  nn_idx, nn_count = same_class_knn(x, y, mask, k_neighbors)
  new = interpolate(k_new, x, plan.seed, nn_idx, nn_count)
  fallback = jnp.any((deficits > 0) & (counts <= k_neighbors))
  return (*append_rows(x, y, mask, plan.cls, plan.valid, new), fallback)
