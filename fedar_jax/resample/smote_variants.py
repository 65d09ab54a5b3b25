"""SMOTE variants (imbalanced-learn 0.14 semantics): BorderlineSMOTE-1/2, ADASYN,
KMeansSMOTE, SVMSMOTE.

Layout as `oversample`: the N input rows first, then S synthetic slots
(M = N + S), each slot valid or not. Every sampler returns
`(x, y, mask, fallback)`; `fallback` (bool scalar) is True where
imbalanced-learn raises and we go on instead (fewer neighbours, fewer or no
synthetic samples for the class concerned).

Neighbourhoods exclude the row itself (imbalanced-learn drops the first
neighbour of a row queried against a set containing it).
"""
import math

import jax
import jax.numpy as jnp

from fedar_jax.resample import gate
from fedar_jax.resample import kmeans as kmeans_lib
from fedar_jax.resample import neighbors
from fedar_jax.resample import oversample
from fedar_jax.resample import strategy
from fedar_jax.resample import svm as svm_lib


def _append(x, y, mask, cls, valid, new_x):
  return (jnp.concatenate([x, new_x.astype(x.dtype)]),
          jnp.concatenate([y, cls.astype(y.dtype)]),
          jnp.concatenate([mask, valid]))


def _all_knn(sq, mask, k):
  n = sq.shape[0]
  allowed = mask[:, None] & mask[None, :] & ~jnp.eye(n, dtype=bool)
  return neighbors.masked_knn(sq, allowed, k)


def smote(key, x, y, mask, *, num_classes: int, num_slots: int, k_neighbors: int = 5):
  """`oversample.smote` plus its fallback flag: a class to grow has <= k_neighbors rows."""
  counts = gate.class_counts(y, mask, num_classes)
  need = oversample.oversampling_deficits(counts) > 0
  out = oversample.smote(key, x, y, mask, num_classes=num_classes, num_slots=num_slots,
                         k_neighbors=k_neighbors)
  return (*out, jnp.any(need & (counts <= k_neighbors)))


def random_over(key, x, y, mask, *, num_classes: int, num_slots: int):
  """`oversample.random_over` (never falls back)."""
  return (*oversample.random_over(key, x, y, mask, num_classes=num_classes,
                                  num_slots=num_slots), jnp.asarray(False))


def danger_and_noise(sq, y, mask, m_neighbors: int):
  """imbalanced-learn's `_in_danger_noise` for every row at once.

  Among a row's m nearest other rows (all classes), n_other have another label.
  danger: m/2 <= n_other < m; noise: n_other == m (m = neighbours found).
  Returns (danger bool[N], noise bool[N], m_found int32[N]).
  """
  idx, cnt = _all_knn(sq, mask, m_neighbors)
  valid = jnp.arange(idx.shape[1])[None, :] < cnt[:, None]
  n_other = jnp.sum((y[idx] != y[:, None]) & valid, axis=1)
  danger = mask & (2 * n_other >= cnt) & (n_other < cnt)
  noise = mask & (cnt > 0) & (n_other == cnt)
  return danger, noise, cnt


def borderline_smote(key, x, y, mask, *, num_classes: int, num_slots: int, kind: int = 1,
                     k_neighbors: int = 5, m_neighbors: int = 10):
  """BorderlineSMOTE kind 1 or 2.

  Seeds are drawn uniformly from the class's "danger" rows (see
  `danger_and_noise`); a class with no danger row gets no synthetic rows
  (as imbalanced-learn). Kind 1 interpolates toward one of the seed's k nearest
  same-class rows with step U[0, 1); kind 2 toward one of its k nearest rows of
  any class, the step further scaled by U[0, 0.5) when that row has another label.
  """
  k_plan, k_col, k_step, k_shrink = jax.random.split(key, 4)
  counts = gate.class_counts(y, mask, num_classes)
  deficits = oversample.oversampling_deficits(counts)
  sq = neighbors.pairwise_sq_distances(x, x, mask)
  danger, _, m_found = danger_and_noise(sq, y, mask, m_neighbors)
  has_danger = gate.class_counts(y, danger, num_classes) > 0
  plan = oversample.plan_slots(k_plan, y, danger, jnp.where(has_danger, deficits, 0), num_slots)
  if kind == 1:
    nn_idx, nn_count = oversample.same_class_knn(x, y, mask, k_neighbors)
    new = oversample.interpolate(k_col, x, plan.seed, nn_idx, nn_count)
    short = jnp.any((deficits > 0) & has_danger & (counts <= k_neighbors))
  else:
    nn_idx, nn_count = _all_knn(sq, mask, k_neighbors)
    s = plan.seed.shape[0]
    cnt = nn_count[plan.seed]
    col = jnp.minimum(jnp.floor(jax.random.uniform(k_col, (s,)) * cnt).astype(jnp.int32),
                      jnp.maximum(cnt - 1, 0))
    nb = jnp.where(cnt > 0, nn_idx[plan.seed, col], plan.seed)
    shrink = jnp.where(y[nb] != plan.cls, jax.random.uniform(k_shrink, (s,), maxval=0.5), 1.0)
    steps = jax.random.uniform(k_step, (s,)) * shrink
    base = x[plan.seed].astype(jnp.float32)
    new = base + steps[:, None] * (x[nb].astype(jnp.float32) - base)
    short = jnp.any(deficits > 0) & (jnp.sum(mask) <= k_neighbors)
  fallback = short | (jnp.any(deficits > 0) & jnp.any(mask & (m_found < m_neighbors)))
  return (*_append(x, y, mask, plan.cls, plan.valid, new), fallback)


def adasyn_allocation(x, y, mask, *, num_classes: int, n_neighbors: int = 5):
  """ADASYN's synthetic rows per seed row.

  r_i = (rows of another class among the n nearest rows of i) / n, normalised
  over i's class and times the class's deficit, rounded half-to-even (np.rint).
  Returns (alloc int32[N], fallback bool): fallback marks a class to grow whose
  rows have no other-class neighbour (imbalanced-learn raises; we add none) or
  with <= n rows (fewer same-class neighbours).
  """
  counts = gate.class_counts(y, mask, num_classes)
  deficits = oversample.oversampling_deficits(counts)
  sq = neighbors.pairwise_sq_distances(x, x, mask)
  idx, cnt = _all_knn(sq, mask, n_neighbors)
  valid = jnp.arange(idx.shape[1])[None, :] < cnt[:, None]
  ratio = jnp.sum((y[idx] != y[:, None]) & valid, axis=1) / jnp.maximum(cnt, 1).astype(jnp.float32)
  ratio = jnp.where(mask, ratio, 0.0)
  total = jnp.zeros((num_classes,), jnp.float32).at[y].add(ratio)
  norm = ratio / jnp.where(total[y] > 0, total[y], 1.0)
  alloc = jnp.where(mask & (deficits[y] > 0), jnp.rint(norm * deficits[y]), 0).astype(jnp.int32)
  need = deficits > 0
  got = jnp.zeros((num_classes,), jnp.int32).at[y].add(alloc)
  fallback = jnp.any(need & ((total == 0) | (got == 0) | (counts <= n_neighbors)))
  return alloc, fallback | (jnp.any(need) & (jnp.sum(mask) <= n_neighbors))


def adasyn(key, x, y, mask, *, num_classes: int, num_slots: int, n_neighbors: int = 5):
  """ADASYN: each row seeds `adasyn_allocation` synthetic rows, each on the segment
  to one of its n nearest same-class rows, step U[0, 1). The total may differ
  from the deficit by rounding (as imbalanced-learn)."""
  alloc, fallback = adasyn_allocation(x, y, mask, num_classes=num_classes,
                                      n_neighbors=n_neighbors)
  ends = jnp.cumsum(alloc)
  slot = jnp.arange(num_slots)
  seed = jnp.minimum(jnp.searchsorted(ends, slot, side='right'), y.shape[0] - 1).astype(jnp.int32)
  valid = slot < ends[-1]
  nn_idx, nn_count = oversample.same_class_knn(x, y, mask, n_neighbors)
  new = oversample.interpolate(key, x, seed, nn_idx, nn_count)
  return (*_append(x, y, mask, y[seed], valid, new), fallback)


def kmeans_smote_allocation(key, x, y, mask, *, num_classes: int, k_neighbors: int = 2,
                            n_clusters: int = 8, max_iter: int = 100):
  """KMeansSMOTE's clusters and synthetic rows per (class, cluster).

  k-means with `n_clusters` centres on all rows (k-means++ seeding, at most
  `max_iter` Lloyd iterations; imbalanced-learn uses MiniBatchKMeans). For a
  class c to grow by d_c, cluster j is eligible iff its share of class-c rows
  is >= d_c / sum(d) / 2 and it holds >= k_neighbors + 1 rows of c; eligible
  clusters get ceil(d_c * w_j) rows, w_j ∝ (mean pairwise distance of the
  cluster's class-c rows)^e / n_cj, e = 0.16 log_1.6(n_cj)^1.8 (as imbalanced-learn).

  Returns (group int32[N] = y * n_clusters + cluster, alloc int32[K * n_clusters],
  fallback bool: a class to grow has no eligible cluster, or fewer rows than clusters).
  """
  n = y.shape[0]
  counts = gate.class_counts(y, mask, num_classes)
  deficits = oversample.oversampling_deficits(counts)
  n_real = jnp.sum(mask)
  zeros = jnp.zeros((n,), jnp.int32)
  active = jnp.arange(n_clusters) < jnp.minimum(n_clusters, n_real)
  _, cluster = kmeans_lib.kmeans(key, x, mask, zeros, jnp.zeros((n_clusters,), jnp.int32),
                                 active, max_iter)
  cluster = jnp.minimum(cluster, n_clusters - 1)
  groups = num_classes * n_clusters
  group = (y * n_clusters + cluster).astype(jnp.int32)
  onehot = jax.nn.one_hot(group, groups, dtype=jnp.float32) * mask[:, None]
  n_cj = jnp.sum(onehot, axis=0).reshape(num_classes, n_clusters)
  size = jnp.sum(n_cj, axis=0)
  frac = n_cj / jnp.maximum(size, 1.0)[None, :]
  balance = deficits / jnp.maximum(jnp.sum(deficits), 1) / 2.0
  eligible = ((deficits > 0)[:, None] & (size > 0)[None, :] & (frac >= balance[:, None])
              & (n_cj >= k_neighbors + 1))
  dist = jnp.sqrt(neighbors.pairwise_sq_distances(x, x, mask))
  pair_sum = jnp.sum(onehot * jnp.matmul(dist, onehot, precision=jax.lax.Precision.HIGHEST),
                     axis=0).reshape(num_classes, n_clusters)
  nc = jnp.maximum(n_cj, 2.0)
  mean_d = pair_sum / (nc * nc - nc)
  exponent = (jnp.log(nc) / math.log(1.6)) ** 1.8 * 0.16
  sparsity = jnp.where(eligible, mean_d ** exponent / nc, 0.0)
  ssum = jnp.sum(sparsity, axis=1, keepdims=True)
  n_el = jnp.sum(eligible, axis=1, keepdims=True)
  # All-zero sparsities (duplicated rows) would be 0/0 in imbalanced-learn: share equally.
  w = jnp.where(ssum > 0, sparsity / jnp.where(ssum > 0, ssum, 1.0),
                eligible / jnp.maximum(n_el, 1))
  alloc = jnp.where(eligible, jnp.ceil(deficits[:, None] * w), 0).astype(jnp.int32)
  no_cluster = (deficits > 0) & ~jnp.any(eligible, axis=1)
  fallback = jnp.any(no_cluster) | (jnp.any(deficits > 0) & (n_real < n_clusters))
  return group, alloc.reshape(-1), fallback


def kmeans_smote(key, x, y, mask, *, num_classes: int, num_slots: int, k_neighbors: int = 2,
                 n_clusters: int = 8, max_iter: int = 100):
  """KMeansSMOTE: SMOTE inside the eligible clusters of a k-means on all rows
  (see `kmeans_smote_allocation`); neighbours are the seed's k nearest rows of
  its class in its cluster. Totals may exceed the deficit by the ceilings."""
  k_km, k_plan, k_new = jax.random.split(key, 3)
  group, alloc, fallback = kmeans_smote_allocation(
      k_km, x, y, mask, num_classes=num_classes, k_neighbors=k_neighbors,
      n_clusters=n_clusters, max_iter=max_iter)
  plan = oversample.plan_slots(k_plan, group, mask, alloc, num_slots)
  nn_idx, nn_count = oversample.same_class_knn(x, group, mask, k_neighbors)
  new = oversample.interpolate(k_new, x, plan.seed, nn_idx, nn_count)
  return (*_append(x, y, mask, plan.cls // n_clusters, plan.valid, new), fallback)


def svm_smote(key, x, y, mask, *, num_classes: int, num_slots: int, k_neighbors: int = 5,
              m_neighbors: int = 10, out_step: float = 0.5, svm_sweeps: int = 50):
  """SVMSMOTE.

  Support vectors come from `svm.support_vectors` (one-vs-one RBF SVMs, C=1,
  gamma='scale', as scikit-learn's SVC defaults, solved by bounded dual
  coordinate descent). Per class c to grow by d: drop noisy support vectors
  (all m nearest rows of other classes); split the rest into danger and safe
  (`danger_and_noise`); n1 = int(Beta(10, 10) * (d + 1)) rows interpolate from
  danger seeds toward one of their k nearest class-c rows (step U[0, 1)), and
  d - n1 extrapolate from safe seeds away from one (step -out_step * U[0, 1)).
  If only one group exists, only its share is generated (as imbalanced-learn);
  with no usable support vector, none (imbalanced-learn raises; fallback).
  """
  k_beta, k_d, k_s, k_nd, k_ns = jax.random.split(key, 5)
  counts = gate.class_counts(y, mask, num_classes)
  deficits = oversample.oversampling_deficits(counts)
  sq = neighbors.pairwise_sq_distances(x, x, mask)
  sv = svm_lib.support_vectors(x, y, mask, num_classes=num_classes, sweeps=svm_sweeps)
  danger, noise, _ = danger_and_noise(sq, y, mask, m_neighbors)
  usable = sv & ~noise
  sv_danger = usable & danger
  sv_safe = usable & ~danger
  has_d = gate.class_counts(y, sv_danger, num_classes) > 0
  has_s = gate.class_counts(y, sv_safe, num_classes) > 0
  # Beta(10, 10) is the 10th smallest of 19 uniforms (cheaper to compile than gamma draws).
  frac = jnp.sort(jax.random.uniform(k_beta, (num_classes, 19)), axis=1)[:, 9]
  n1 = jnp.floor(frac * (deficits + 1)).astype(jnp.int32)
  n_danger = jnp.where(has_d, n1, 0)
  n_safe = jnp.where(has_s, deficits - n1, 0)
  nn_idx, nn_count = oversample.same_class_knn(x, y, mask, k_neighbors)
  # Danger and safe parts share the slots: danger first, then safe.
  slot_d = oversample.plan_slots(k_d, y, sv_danger, n_danger, num_slots)
  new_d = oversample.interpolate(k_nd, x, slot_d.seed, nn_idx, nn_count)
  used = jnp.sum(n_danger)
  plan_s = oversample.plan_slots(k_s, y, sv_safe, n_safe, num_slots)
  new_s = oversample.interpolate(k_ns, x, plan_s.seed, nn_idx, nn_count, step_size=-out_step)
  # Slot j takes danger slot j when j < used, else safe slot j - used.
  j = jnp.arange(num_slots)
  js = jnp.clip(j - used, 0, max(num_slots - 1, 0))
  from_d = j < used
  cls = jnp.where(from_d, slot_d.cls, plan_s.cls[js])
  valid = jnp.where(from_d, slot_d.valid, plan_s.valid[js])
  new = jnp.where(from_d[:, None], new_d, new_s[js])
  need = deficits > 0
  fallback = jnp.any(need & ~(has_d | has_s)) | jnp.any(need & (counts <= k_neighbors))
  return (*_append(x, y, mask, cls, valid, new), fallback)
