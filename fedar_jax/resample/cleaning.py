"""Prototype-selection under-samplers (imbalanced-learn 0.14 semantics).

TomekLinks, EditedNearestNeighbours (ENN), RepeatedEditedNearestNeighbours
(RENN), AllKNN, CondensedNearestNeighbour (CNN), OneSidedSelection (OSS),
NeighbourhoodCleaningRule (NCR) and InstanceHardnessThreshold (IHT).

Layout: every output keeps the N input rows in place (M = N) and clears the
mask bit of each removed row. Every sampler returns `(x, y, mask, fallback)`;
`fallback` (bool scalar) is True where imbalanced-learn would have raised
(too few rows for the neighbourhood) and we went on with fewer neighbours.

Neighbourhoods exclude the row itself (imbalanced-learn queries the fitted
set and drops the first neighbour, which is the row itself on tie-free data).
Which classes are acted on is `strategy.not_minority` ('auto').
"""
import jax
import jax.numpy as jnp

from fedar_jax.resample import gate
from fedar_jax.resample import neighbors
from fedar_jax.resample import strategy


def _vote(labels, valid, num_classes):
  """Most frequent label among valid entries of each row (lowest label on ties)."""
  votes = jnp.sum(jax.nn.one_hot(labels, num_classes, dtype=jnp.int32) * valid[..., None], axis=1)
  return jnp.argmax(votes, axis=-1).astype(jnp.int32)


def enn_keep(sq, y, alive, act, k: int, num_classes: int, kind: str = 'all', knn=None):
  """One pass of Wilson's editing.

  Args:
    sq: float32[N, N] squared distances. y: int32[N]. alive: bool[N] rows in play.
    act: bool[K] classes that may lose rows. k: neighbours (static).
    kind: 'all' keeps a row iff all its k neighbours share its label; 'mode'
      iff the most frequent neighbour label is its own.
    knn: optional precomputed `neighbors.knn_among(sq, alive, >= k)`.

  Returns:
    (keep bool[N] (False for dead rows), short bool: an acted-on row had < k neighbours).
  """
  idx, cnt = knn if knn is not None else neighbors.knn_among(sq, alive, k)
  idx = idx[:, :k]
  cnt = jnp.minimum(cnt, k)
  valid = jnp.arange(idx.shape[1])[None, :] < cnt[:, None]
  labels = y[idx]
  if kind == 'all':
    ok = jnp.all(jnp.where(valid, labels == y[:, None], True), axis=1)
  else:
    ok = (_vote(labels, valid, num_classes) == y) | (cnt == 0)
  acted = alive & act[y]
  return alive & (~acted | ok), jnp.any(acted & (cnt < k))


def tomek_remove(sq, y, alive, act):
  """bool[N]: alive rows of an acted-on class that are in a Tomek link.

  A link is a pair of rows of different classes that are each other's nearest
  neighbour.
  """
  idx, cnt = neighbors.knn_among(sq, alive, 1)
  nn = idx[:, 0]
  link = alive & (cnt > 0) & (y[nn] != y) & (nn[nn] == jnp.arange(y.shape[0]))
  return link & act[y]


def _setup(x, y, mask, num_classes):
  counts = gate.class_counts(y, mask, num_classes)
  return neighbors.pairwise_sq_distances(x, x, mask), counts


def tomek(key, x, y, mask, *, num_classes: int):
  """TomekLinks: removes the non-minority end of every Tomek link."""
  del key
  sq, counts = _setup(x, y, mask, num_classes)
  remove = tomek_remove(sq, y, mask, strategy.not_minority(counts))
  return x, y, mask & ~remove, jnp.sum(mask) == 1


def enn(key, x, y, mask, *, num_classes: int, n_neighbors: int = 3):
  """EditedNearestNeighbours(kind_sel='all'): drops non-minority rows with any other-class neighbour."""
  del key
  sq, counts = _setup(x, y, mask, num_classes)
  keep, short = enn_keep(sq, y, mask, strategy.not_minority(counts), n_neighbors, num_classes)
  return x, y, keep, short


def _stop(counts0, counts):
  """imbalanced-learn's RENN/AllKNN stopping test after a pass."""
  minority = strategy.minority_class(counts0)
  min_count = counts0[minority]
  others = (jnp.arange(counts.shape[0]) != minority) & (counts > 0)
  became_minority = jnp.any(others & (counts < min_count))
  class_removed = jnp.any((counts0 > 0) & (counts == 0))
  return became_minority | class_removed


def renn(key, x, y, mask, *, num_classes: int, n_neighbors: int = 3, max_iter: int = 100):
  """RepeatedEditedNearestNeighbours: ENN repeated until nothing changes.

  At most `max_iter` passes (imbalanced-learn's default bound, so the bound is
  the same). It also stops after a pass that leaves a non-minority class smaller
  than the original minority or removes a class; that pass's removals are kept.
  The classes acted on are recomputed ('not minority') before every pass.
  """
  del key
  sq, counts0 = _setup(x, y, mask, num_classes)

  def cond(state):
    _, done, it, _ = state
    return (~done) & (it < max_iter)

  def body(state):
    alive, _, it, short = state
    counts = gate.class_counts(y, alive, num_classes)
    keep, s = enn_keep(sq, y, alive, strategy.not_minority(counts), n_neighbors, num_classes)
    new_counts = gate.class_counts(y, keep, num_classes)
    converged = jnp.sum(keep) == jnp.sum(alive)
    return keep, converged | _stop(counts0, new_counts), it + 1, short | s

  alive, _, _, short = jax.lax.while_loop(cond, body, (mask, jnp.sum(mask) == 0, jnp.int32(0), jnp.asarray(False)))
  return x, y, alive, short


def allknn(key, x, y, mask, *, num_classes: int, n_neighbors: int = 3):
  """AllKNN: ENN passes with 1, 2, ..., n_neighbors neighbours on the shrinking set.

  Stops early like imbalanced-learn (allow_minority=False) after a pass that
  leaves a non-minority class smaller than the original minority or removes a class.
  """
  del key
  sq, counts0 = _setup(x, y, mask, num_classes)
  alive, done, short = mask, jnp.sum(mask) == 0, jnp.asarray(False)
  for k in range(1, n_neighbors + 1):
    counts = gate.class_counts(y, alive, num_classes)
    keep, s = enn_keep(sq, y, alive, strategy.not_minority(counts), k, num_classes)
    short = short | (s & ~done)
    alive = jnp.where(done, alive, keep)
    done = done | _stop(counts0, gate.class_counts(y, alive, num_classes))
  return x, y, alive, short


def ncr(key, x, y, mask, *, num_classes: int, n_neighbors: int = 3,
        threshold_cleaning: float = 0.5):
  """NeighbourhoodCleaningRule.

  Removes (A1) the non-minority rows that ENN(kind_sel='mode') edits, and
  (A2) the neighbours, of classes with more than threshold_cleaning x minority
  rows, of every minority row that a k-NN classifier (fitted on all rows, the
  row itself included in its own vote, as scikit-learn's `predict`) misclassifies.
  """
  del key
  sq, counts = _setup(x, y, mask, num_classes)
  act = strategy.not_minority(counts)
  knn = neighbors.knn_among(sq, mask, n_neighbors)
  keep_a1, short = enn_keep(sq, y, mask, act, n_neighbors, num_classes, kind='mode', knn=knn)
  minority = strategy.reference_minority(counts, y, mask)
  clean = act & (counts > strategy.minority_count(counts) * threshold_cleaning)
  # Prediction: the row itself is its own nearest neighbour, then n_neighbors - 1 others.
  idx, cnt = knn
  k = idx.shape[1]
  with_self = jnp.concatenate([jnp.arange(y.shape[0])[:, None], idx[:, :k - 1]], axis=1)
  valid = jnp.arange(k)[None, :] < jnp.minimum(cnt + 1, n_neighbors)[:, None]
  pred = _vote(y[with_self], valid, num_classes)
  misclassified = mask & (y == minority) & (pred != y)
  nb_valid = (jnp.arange(k)[None, :] < cnt[:, None]) & misclassified[:, None]
  hit = jnp.zeros(y.shape, bool).at[jnp.where(nb_valid, idx, y.shape[0])].set(True, mode='drop')
  a2 = hit & clean[y] & mask
  return x, y, keep_a1 & ~a2, short


def _seed_ranks(key, counts):
  """One uniformly drawn in-class rank per class (imbalanced-learn's n_seeds_S=1)."""
  u = jax.random.uniform(key, counts.shape)
  return jnp.minimum(jnp.floor(u * counts).astype(jnp.int32), jnp.maximum(counts - 1, 0))


def _knn_predict(sq_row, allowed, y, k, num_classes):
  d = jnp.where(allowed, sq_row, jnp.inf)
  neg, idx = jax.lax.top_k(-d, k)
  return _vote(y[idx][None], jnp.isfinite(neg)[None], num_classes)[0]


def cnn_given_seeds(x, y, mask, seed_rank, *, num_classes: int, n_neighbors: int = 1):
  """CondensedNearestNeighbour with the seed row of each class given (see `cnn`).

  seed_rank: int32[K], the in-class rank (row order) of each class's seed.
  """
  sq, counts = _setup(x, y, mask, num_classes)
  act = strategy.not_minority(counts)
  minority = strategy.reference_minority(counts, y, mask)
  rank = strategy.rank_in_class(y, mask, num_classes)
  in_c = mask & ((y == minority) | (act[y] & (rank == seed_rank[y])))
  k = min(n_neighbors, y.shape[0])

  def visit(i, in_c):
    allowed = in_c & ((y == y[i]) | (y == minority))
    pred = _knn_predict(sq[i], allowed, y, k, num_classes)
    add = mask[i] & act[y[i]] & ~in_c[i] & (pred != y[i])
    return in_c.at[i].set(in_c[i] | add)

  in_c = jax.lax.fori_loop(0, y.shape[0], visit, in_c)
  return x, y, in_c, jnp.asarray(False)


def cnn(key, x, y, mask, *, num_classes: int, n_neighbors: int = 1):
  """CondensedNearestNeighbour (Hart): one pass over each non-minority class.

  Each non-minority class starts its store from the minority rows plus one
  random row of the class; visiting the class's rows in order, a row that the
  k-NN rule on the current store misclassifies joins the store. The store is
  the output. One pass of N steps (as imbalanced-learn). Deviation:
  imbalanced-learn's skip-list mixes global and in-class indices, so it may
  skip a few rows Hart's rule would visit; we visit every row.
  """
  counts = gate.class_counts(y, mask, num_classes)
  return cnn_given_seeds(x, y, mask, _seed_ranks(key, counts), num_classes=num_classes,
                         n_neighbors=n_neighbors)


def oss_given_seeds(x, y, mask, seed_rank, *, num_classes: int, n_neighbors: int = 1):
  """OneSidedSelection with the seed row of each class given (see `oss`)."""
  sq, counts = _setup(x, y, mask, num_classes)
  act = strategy.not_minority(counts)
  minority = strategy.reference_minority(counts, y, mask)
  rank = strategy.rank_in_class(y, mask, num_classes)
  seed = mask & act[y] & (rank == seed_rank[y])
  store = mask & ((y == minority) | seed)
  k = min(n_neighbors, y.shape[0])
  allowed = store[None, :] & ((y[None, :] == y[:, None]) | (y[None, :] == minority))
  d = jnp.where(allowed, sq, jnp.inf)
  neg, idx = jax.lax.top_k(-d, k)
  pred = _vote(y[idx], jnp.isfinite(neg), num_classes)
  kept = mask & (~act[y] | seed | (pred != y))
  remove = tomek_remove(sq, y, kept, act)
  return x, y, kept & ~remove, jnp.asarray(False)


def oss(key, x, y, mask, *, num_classes: int, n_neighbors: int = 1):
  """OneSidedSelection: keep one random seed and the rows a k-NN on (minority + seed)
  misclassifies, per non-minority class; then remove Tomek links of those classes."""
  counts = gate.class_counts(y, mask, num_classes)
  return oss_given_seeds(x, y, mask, _seed_ranks(key, counts), num_classes=num_classes,
                         n_neighbors=n_neighbors)


def percentile(values, valid, q):
  """numpy.percentile(values[valid], q) with linear interpolation (q traced, in [0, 100])."""
  n = jnp.sum(valid)
  v = jnp.sort(jnp.where(valid, values, jnp.inf))
  pos = jnp.clip(q / 100.0 * (n - 1).astype(jnp.float32), 0.0, jnp.maximum(n - 1, 0))
  lo = jnp.floor(pos).astype(jnp.int32)
  hi = jnp.minimum(lo + 1, jnp.maximum(n - 1, 0))
  frac = pos - lo
  vlo, vhi = v[lo], v[hi]
  return jnp.where((frac > 0) & (vhi != vlo), vlo + (vhi - vlo) * frac, vlo)


def cv_parzen_log_odds(key, x, y, mask, *, num_classes: int, folds: int = 5):
  """Cross-validated hardness score: own-class log-odds from a Gaussian-kernel
  (Parzen window) classifier.

  Stratified random folds sized as scikit-learn's StratifiedKFold (labels in
  sorted order dealt round-robin over the folds, so class c's row of in-class
  rank r, in random order, goes to fold (rows of lower labels + r) % folds); a row's probability is the kernel mass of its own class among the
  rows of the other folds, with bandwidth h^2 = mean squared distance to the
  nearest other-fold row. Returns its log-odds, float32[N] (monotone in the
  probability, so the same rows pass a percentile threshold; continuous, so
  ties are rare).
  """
  sq = neighbors.pairwise_sq_distances(x, x, mask)
  rank = strategy.rank_in_class(y, mask, num_classes,
                                strategy.row_uniforms(key, y.shape[0]))
  counts = gate.class_counts(y, mask, num_classes)
  fold = (jnp.cumsum(counts)[y] - counts[y] + rank) % folds
  allowed = mask[:, None] & mask[None, :] & (fold[:, None] != fold[None, :])
  nearest = jnp.min(jnp.where(allowed, sq, jnp.inf), axis=1)
  has = mask & jnp.isfinite(nearest)
  h2 = jnp.sum(jnp.where(has, nearest, 0.0)) / jnp.maximum(jnp.sum(has), 1)
  logits = -sq / (2.0 * jnp.maximum(h2, jnp.finfo(jnp.float32).tiny))
  same = allowed & (y[:, None] == y[None, :])
  other = allowed & (y[:, None] != y[None, :])
  lse_same = jax.nn.logsumexp(jnp.where(same, logits, -jnp.inf), axis=1)
  lse_other = jax.nn.logsumexp(jnp.where(other, logits, -jnp.inf), axis=1)
  # log-odds of the own class: monotone in the probability, and it does not
  # saturate at 1.0 in float32 (so no artificial ties); +-inf when one side is empty.
  log_odds = jnp.where(jnp.isfinite(lse_same) | jnp.isfinite(lse_other),
                       lse_same - lse_other, 0.0)
  return jnp.where(has, log_odds, jnp.inf).astype(jnp.float32)


def iht(key, x, y, mask, *, num_classes: int, cv: int = 5):
  """InstanceHardnessThreshold with a cross-validated Parzen-window classifier
  (`cv_parzen_log_odds`) instead of a random forest.

  For each non-minority class c, keeps the rows whose out-of-fold probability
  of their own class is >= the (1 - minority/count_c) percentile of the class
  (numpy's linear percentile, as imbalanced-learn), so at least the minority
  count survives (more on ties).
  """
  counts = gate.class_counts(y, mask, num_classes)
  act = strategy.not_minority(counts)
  score = cv_parzen_log_odds(key, x, y, mask, num_classes=num_classes, folds=cv)
  m = strategy.minority_count(counts)

  def threshold(c):
    q = (1.0 - m / jnp.maximum(counts[c], 1)) * 100.0
    return percentile(score, mask & (y == c), q)

  thr = jax.vmap(threshold)(jnp.arange(num_classes))
  keep = mask & (~act[y] | (score >= thr[y]))
  # StratifiedKFold raises only when every class has fewer than `cv` rows (else it warns).
  return x, y, keep, jnp.all((counts == 0) | (counts < cv)) & jnp.any(act)
