"""Under-samplers that reduce every non-minority class to the minority count
(imbalanced-learn 0.14 semantics): RandomUnderSampler, NearMiss 1/2/3,
ClusterCentroids.

Layout: M = N. Rows stay in place and removed rows lose their mask bit;
ClusterCentroids writes class c's centroids into the rows of its first
(minority count) members and masks its other rows. Every sampler returns
`(x, y, mask, fallback)` (fallback: imbalanced-learn would have raised).
"""
import jax
import jax.numpy as jnp

from fedar_jax.resample import gate
from fedar_jax.resample import kmeans as kmeans_lib
from fedar_jax.resample import neighbors
from fedar_jax.resample import strategy


def random_under(key, x, y, mask, *, num_classes: int):
  """RandomUnderSampler: keeps a uniform random subset (without replacement) of
  minority-count rows of every non-minority class."""
  counts = gate.class_counts(y, mask, num_classes)
  act = strategy.not_minority(counts)
  rank = strategy.rank_in_class(y, mask, num_classes,
                                strategy.row_uniforms(key, y.shape[0]))
  keep = mask & (~act[y] | (rank < strategy.minority_count(counts)))
  return x, y, keep, jnp.asarray(False)


def nearmiss_scores(x, y, mask, *, num_classes: int, version: int, n_neighbors: int = 3,
                    n_neighbors_ver3: int = 3):
  """NearMiss's per-row score and candidate set.

  Returns (score float32[N], candidate bool[N], fallback bool). Version 1: sum
  of distances to the n_neighbors nearest minority rows; version 2: to the
  n_neighbors farthest; version 3: as version 1, and only rows among the
  n_neighbors_ver3 nearest same-class rows of some minority row are candidates.
  """
  counts = gate.class_counts(y, mask, num_classes)
  minority = strategy.reference_minority(counts, y, mask)
  m = strategy.minority_count(counts)
  dist = jnp.sqrt(neighbors.pairwise_sq_distances(x, x, mask))
  is_min = mask & (y == minority)
  k = min(n_neighbors, y.shape[0])
  if version == 2:
    vals, _ = jax.lax.top_k(jnp.where(is_min[None, :], dist, -jnp.inf), k)
    valid = jnp.isfinite(vals)
  else:
    neg, _ = jax.lax.top_k(jnp.where(is_min[None, :], -dist, -jnp.inf), k)
    vals, valid = -neg, jnp.isfinite(neg)
  score = jnp.sum(jnp.where(valid, vals, 0.0), axis=1)
  fallback = (m < n_neighbors) & (version != 2)
  candidate = mask
  if version == 3:
    k3 = min(n_neighbors_ver3, y.shape[0])

    def hits(c):
      allowed = mask & (y == c)
      neg3, idx3 = jax.lax.top_k(jnp.where(allowed[None, :], -dist, -jnp.inf), k3)
      ok = jnp.isfinite(neg3) & is_min[:, None]
      return jnp.zeros(y.shape, bool).at[jnp.where(ok, idx3, y.shape[0])].set(True, mode='drop')

    candidate = mask & jnp.any(jax.vmap(hits)(jnp.arange(num_classes)), axis=0)
    act = strategy.not_minority(counts)
    fallback = fallback | jnp.any(act & (counts < n_neighbors_ver3))
  return score, candidate, fallback & jnp.any(strategy.not_minority(counts))


def nearmiss(key, x, y, mask, *, num_classes: int, version: int = 1, n_neighbors: int = 3,
             n_neighbors_ver3: int = 3):
  """NearMiss-1/2/3: keeps the minority-count rows of each non-minority class with
  the smallest score (versions 1, 2) or the largest among the candidates
  (version 3, which may keep fewer). Ties go to the lower row index."""
  del key
  counts = gate.class_counts(y, mask, num_classes)
  act = strategy.not_minority(counts)
  score, candidate, fallback = nearmiss_scores(x, y, mask, num_classes=num_classes,
                                               version=version, n_neighbors=n_neighbors,
                                               n_neighbors_ver3=n_neighbors_ver3)
  priority = -score if version == 3 else score
  rank = strategy.rank_in_class(y, candidate, num_classes, priority)
  keep = mask & (~act[y] | (candidate & (rank < strategy.minority_count(counts))))
  return x, y, keep, fallback


def cluster_centroids(key, x, y, mask, *, num_classes: int, max_iter: int = 100):
  """ClusterCentroids (soft voting): replaces each non-minority class by the
  centres of a k-means with minority-count clusters fitted on that class.

  k-means: k-means++ seeding (one init) and at most `max_iter` Lloyd
  iterations (scikit-learn's KMeans: greedy k-means++, up to 300 iterations).
  """
  counts = gate.class_counts(y, mask, num_classes)
  act = strategy.not_minority(counts)
  rank = strategy.rank_in_class(y, mask, num_classes)
  slot = mask & act[y] & (rank < strategy.minority_count(counts))
  centers, _ = kmeans_lib.kmeans(key, x, mask, y, y, slot, max_iter)
  x_out = jnp.where(slot[:, None], centers.astype(x.dtype), x)
  keep = mask & (~act[y] | slot)
  return x_out, y, keep, jnp.asarray(False)
