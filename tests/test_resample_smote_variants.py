"""BorderlineSMOTE-1/2, ADASYN, KMeansSMOTE, SVMSMOTE against imbalanced-learn 0.14."""
import functools
import math
from unittest import mock

import jax
import numpy as np
import pytest
from imblearn import over_sampling as ios
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.svm import SVC

from fedar_jax import resample
from fedar_jax.resample import smote_variants, svm
from tests import resample_data as rd

REFS = {
    'borderline_smote1': lambda s: ios.BorderlineSMOTE(random_state=s),
    'borderline_smote2': lambda s: ios.BorderlineSMOTE(kind='borderline-2', random_state=s),
    'adasyn': lambda s: ios.ADASYN(random_state=s),
    'kmeans_smote': lambda s: ios.KMeansSMOTE(random_state=s),
    'svm_smote': lambda s: ios.SVMSMOTE(random_state=s),
}


def _ref(name, set_name, seed=0):
  x, y = rd.dataset(set_name)
  try:
    return REFS[name](seed).fit_resample(x, y)
  except (ValueError, RuntimeError):
    return None


def _counts(out):
  return rd.counts(np.concatenate([out['y_in'][out['keep']], out['y_new']]))


@pytest.mark.parametrize('name', ['borderline_smote1', 'borderline_smote2', 'adasyn'])
@pytest.mark.parametrize('set_name', rd.NAMES)
def test_class_counts_equal_imblearn(name, set_name):
  out = rd.run(name)[set_name]
  ref = _ref(name, set_name)
  if ref is None:  # imbalanced-learn raises: we go on and say so
    assert out['fallback']
  else:
    np.testing.assert_array_equal(_counts(out), rd.counts(ref[1]))
    assert not out['fallback']


@pytest.mark.parametrize('name', ['borderline_smote1', 'borderline_smote2', 'adasyn',
                                  'kmeans_smote', 'svm_smote'])
def test_fallback_where_imblearn_raises(name):
  # A class of 3 rows (<= k_neighbors): the SMOTE variants of imbalanced-learn raise,
  # except Borderline-2, whose neighbours come from every class.
  rng = np.random.default_rng(0)
  y = np.repeat([0, 1], [30, 3]).astype(np.int32)
  x = rng.normal(size=(33, 8)).astype(np.float32)
  raises = name != 'borderline_smote2'
  try:
    ref = REFS[name](0).fit_resample(x, y)
    raised = False
  except (ValueError, RuntimeError):
    raised = True
  assert raised == raises
  r = resample.make_resampler(name, num_classes=2, capacity=33, max_class_count=30)
  key, mask = jax.random.key(0), np.ones(33, bool)
  xo, yo, mo, fell_back = jax.jit(r.resample)(key, x, y, mask)
  assert bool(fell_back) == raises
  assert np.all(np.isfinite(np.asarray(xo)))
  counts = np.bincount(np.asarray(yo)[np.asarray(mo)], minlength=2)
  if name == 'borderline_smote2':
    np.testing.assert_array_equal(counts, np.bincount(ref[1]))
  elif name == 'borderline_smote1':  # fewer neighbours, the whole deficit
    np.testing.assert_array_equal(counts, [30, 30])
  elif name == 'kmeans_smote':       # no eligible cluster: nothing for the class
    np.testing.assert_array_equal(counts, [30, 3])
  elif name == 'adasyn':             # its rounded per-row allocation, fewer neighbours
    alloc = smote_variants.adasyn_allocation(x, y, mask, num_classes=2)[0]
    np.testing.assert_array_equal(counts, [30, 3 + int(np.sum(alloc))])
  else:                              # the Beta draw's share of one support-vector group
    assert counts[0] == 30 and 3 <= counts[1] <= 30


def test_borderline_danger_set_equals_imblearn():
  ours = rd.on_batch(lambda x, y, m: smote_variants.danger_and_noise(
      smote_variants.neighbors.pairwise_sq_distances(x, x, m), y, m, 10)[0], 'danger')
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    ref = ios.BorderlineSMOTE(random_state=0)
    ref.fit_resample(x, y)
    grown = [c for c, n in ref.sampling_strategy_.items() if n > 0]
    for c in grown:
      expected = np.sort(ref.in_danger_indices.get(c, np.array([], int)))
      got = np.flatnonzero(ours[set_name] & (y == c))
      np.testing.assert_array_equal(got, expected, err_msg=f'{set_name} class {c}')


def test_adasyn_per_sample_allocation_equals_imblearn():
  ours = rd.on_batch(lambda x, y, m: smote_variants.adasyn_allocation(
      x, y, m, num_classes=rd.K)[0], 'adasyn_alloc')
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    calls = []
    real_repeat = np.repeat

    def spy(a, repeats, *args, **kwargs):
      calls.append(np.asarray(repeats).copy())
      return real_repeat(a, repeats, *args, **kwargs)

    with mock.patch('imblearn.over_sampling._adasyn.np.repeat', spy):
      ref = ios.ADASYN(random_state=0)
      ref.fit_resample(x, y)
    grown = [c for c, n in ref.sampling_strategy_.items() if n > 0]
    assert len(calls) == len(grown)
    for c, alloc in zip(grown, calls):
      np.testing.assert_array_equal(ours[set_name][y == c], alloc, err_msg=f'{set_name} {c}')
    assert np.all(ours[set_name][~np.isin(y, grown)] == 0)


def _segments(set_name, out, bases_of, neighbours_of):
  """Locates every synthetic point of `out` on a (base, neighbour) segment of its class."""
  x, y = rd.dataset(set_name)
  located = []
  for c in np.unique(out['y_new']):
    pts = out['x_new'][out['y_new'] == c]
    bases = bases_of(c)
    b, nb, t, r = rd.locate(pts, x, bases, neighbours_of(c, bases))
    scale = np.linalg.norm(x[b] - x[nb], axis=1) + 1e-6
    assert np.all(r < 1e-4 * np.maximum(scale, 1.0)), (set_name, c, r.max())
    located.append((c, b, nb, t))
  return located


def _danger(set_name):
  """Our Borderline "danger" rows (m=10) of a data set, computed on the batched sets."""
  return rd.on_batch(lambda x, y, m: smote_variants.danger_and_noise(
      smote_variants.neighbors.pairwise_sq_distances(x, x, m), y, m, 10)[0], 'danger')[set_name]


def _noise(set_name):
  """Our "noise" rows (all m = 10 nearest rows of another class)."""
  return rd.on_batch(lambda x, y, m: smote_variants.danger_and_noise(
      smote_variants.neighbors.pairwise_sq_distances(x, x, m), y, m, 10)[1], 'noise')[set_name]


@pytest.mark.parametrize('set_name', rd.NAMES)
def test_borderline1_points_lie_between_danger_rows_and_same_class_neighbours(set_name):
  x, y = rd.dataset(set_name)
  danger = _danger(set_name)
  out = rd.run('borderline_smote1')[set_name]
  located = _segments(set_name, out, lambda c: np.flatnonzero(danger & (y == c)),
                      lambda c, b: rd.knn(x, 5, b, np.flatnonzero(y == c)))
  for _, _, _, t in located:
    assert np.all((t >= -1e-5) & (t <= 1 + 1e-5))


@pytest.mark.parametrize('set_name', rd.NAMES)
def test_borderline2_steps_shrink_toward_other_class_neighbours(set_name):
  x, y = rd.dataset(set_name)
  danger = _danger(set_name)
  out = rd.run('borderline_smote2')[set_name]
  located = _segments(set_name, out, lambda c: np.flatnonzero(danger & (y == c)),
                      lambda c, b: rd.knn(x, 5, b))
  other_seen = False
  for c, _, nb, t in located:
    other = y[nb] != c
    other_seen |= other.any()
    assert np.all(t >= -1e-5)
    assert np.all(t[~other] <= 1 + 1e-5) and np.all(t[other] <= 0.5 + 1e-5)
  assert other_seen or set_name == 'binary_ir20_d432'


@pytest.mark.parametrize('set_name', rd.NAMES)
def test_adasyn_points_and_seed_counts(set_name):
  x, y = rd.dataset(set_name)
  out = rd.run('adasyn')[set_name]
  alloc = rd.on_batch(lambda x, y, m: smote_variants.adasyn_allocation(
      x, y, m, num_classes=rd.K)[0], 'adasyn_alloc')[set_name]
  located = _segments(set_name, out, lambda c: np.flatnonzero(y == c),
                      lambda c, b: rd.knn(x, 5, b, np.flatnonzero(y == c)))
  for _, _, _, t in located:
    assert np.all((t >= -1e-5) & (t <= 1 + 1e-5))
  # Each class gets exactly the sum of its rows' allocations (the seeds repeat
  # by allocation; which end of a mutual-neighbour segment seeded a point is
  # not observable, so the per-row split is tested on the allocation itself).
  np.testing.assert_array_equal(rd.counts(out['y_new']), np.bincount(y, alloc, rd.K))


def _recover_seeds(name, set_name, x_new, y_new, bases_of, k_of):
  x, y = rd.dataset(set_name)
  out = {'x_new': x_new, 'y_new': y_new}
  located = _segments(set_name, out, bases_of, k_of)
  seeds = np.zeros(len(y), int)
  for _, b, _, _ in located:
    np.add.at(seeds, b, 1)
  return seeds


@pytest.mark.parametrize('name', ['smote', 'borderline_smote1'])
def test_seed_frequencies_match_imblearn_in_distribution(name):
  """Seeds recovered from the synthetic points over 8 seeds, ours vs imbalanced-learn:
  a chi-square test of homogeneity (fixed seeds) must not reject at 1%."""
  set_name = 'multi_ir7_d16'
  x, y = rd.dataset(set_name)
  c = 6  # the minority class
  if name == 'smote':
    bases = np.flatnonzero(y == c)
    ref = lambda s: ios.SMOTE(random_state=s)
  else:
    danger = _danger(set_name)
    bases = np.flatnonzero(danger & (y == c))
    ref = lambda s: ios.BorderlineSMOTE(random_state=s)
  nbs = lambda cls, b: rd.knn(x, 5, b, np.flatnonzero(y == cls))
  ours = np.zeros(len(y), int)
  theirs = np.zeros(len(y), int)
  for s in range(8):
    out = rd.run(name, seed=s)[set_name]
    sel = out['y_new'] == c
    ours += _recover_seeds(name, set_name, out['x_new'][sel], out['y_new'][sel],
                           lambda _: bases, nbs)
    xr, yr = ref(s).fit_resample(x, y)
    sel = np.arange(len(yr)) >= len(y)
    sel &= yr == c
    theirs += _recover_seeds(name, set_name, xr[sel], yr[sel], lambda _: bases, nbs)
  assert ours.sum() == theirs.sum() > 0
  table = np.stack([ours[bases], theirs[bases]])
  table = table[:, table.sum(0) > 0]
  p = stats.chi2_contingency(table)[1]
  assert p > 0.01, (p, table)
  # and ours is uniform over the seed set, as imbalanced-learn's draw
  assert stats.chisquare(ours[bases]).pvalue > 0.01


class _GivenClusters(BaseEstimator):
  """A "k-means" whose `fit_predict` returns fixed labels, so that imbalanced-learn's
  KMeansSMOTE runs its own eligibility, weighting and generation on our clusters."""

  def __init__(self, labels=None, n_clusters=8):
    self.labels = labels
    self.n_clusters = n_clusters

  def fit(self, x, y=None):
    self.labels_ = np.asarray(self.labels)
    return self

  def predict(self, x):
    return self.labels_

  def fit_predict(self, x, y=None):
    return self.fit(x).labels_


def _imblearn_on_clusters(x, y, clusters):
  """imbalanced-learn's KMeansSMOTE given our cluster labels: its output, or None where it raises."""
  try:
    return ios.KMeansSMOTE(kmeans_estimator=_GivenClusters(clusters), random_state=0
                           ).fit_resample(x, y)
  except RuntimeError:
    return None


@functools.lru_cache(maxsize=None)
def _kmeans_smote_with_clusters(k, n, seeds=None):
  """vmapped KMeansSMOTE (capacity n, K = k) returning its output and the cluster of
  every row from the same key (`kmeans_smote` uses the first of three split keys)."""
  r = resample.make_resampler('kmeans_smote', num_classes=k, capacity=n,
                              max_class_count=n)

  def both(key, x, y, m):
    xo, yo, mo, fell_back = r.resample(key, x, y, m)
    group, alloc, alloc_fallback = smote_variants.kmeans_smote_allocation(
        jax.random.split(key, 3)[0], x, y, m, num_classes=k)
    return xo, yo, mo, fell_back, group % 8, alloc, alloc_fallback
  return jax.jit(jax.vmap(both))


@functools.lru_cache(maxsize=None)
def _kmeans_smote_on_data_sets():
  """`_kmeans_smote_with_clusters` on the parity sets with `rd.run`'s keys."""
  keys = jax.random.split(jax.random.key(0), len(rd.NAMES))
  return jax.device_get(_kmeans_smote_with_clusters(rd.K, rd.N)(keys, *rd.batch()))


def test_kmeans_smote_counts_equal_imblearn_on_our_clusters():
  """The clusterings differ (ours: k-means++ + Lloyd; imbalanced-learn: MiniBatchKMeans
  with NumPy's draws), so imbalanced-learn runs on our clusters: class counts and the
  fallback equal its output exactly; every synthetic row lies on a segment from a
  class-c row of an eligible cluster toward one of its 2 nearest class-c rows of
  that cluster, and each cluster gets exactly imbalanced-learn's number of rows."""
  out = rd.run('kmeans_smote')
  clusters = _kmeans_smote_on_data_sets()[4]
  both = 0
  for i, set_name in enumerate(rd.NAMES):
    x, y = rd.dataset(set_name)
    cl = clusters[i, :len(y)]
    o = out[set_name]
    ref = _imblearn_on_clusters(x, y, cl)
    assert o['fallback'] == (ref is None), set_name
    if ref is None:
      continue
    both += 1
    np.testing.assert_array_equal(_counts(o), rd.counts(ref[1]), err_msg=set_name)
    np.testing.assert_array_equal(o['x_in'], x)
    ref_new_y = ref[1][len(y):]
    ref_new_x = ref[0][len(y):]
    for c in np.unique(o['y_new']):
      rows = np.flatnonzero(y == c)
      knn = {j: dict(zip(rows[cl[rows] == j],
                         rd.knn(x, 2, rows[cl[rows] == j], rows[cl[rows] == j])))
             for j in np.unique(cl[rows]) if np.sum(cl[rows] == j) >= 3}
      bases = np.concatenate([list(d) for d in knn.values()])
      nbs = np.array([knn[cl[b]][b] for b in bases])
      pts = o['x_new'][o['y_new'] == c]
      b, nb, t, r = rd.locate(pts, x, bases, nbs)
      scale = np.linalg.norm(x[b] - x[nb], axis=1)
      assert np.all(r < 1e-4 * np.maximum(scale, 1.0)), (set_name, c, r.max())
      assert np.all((t >= -1e-5) & (t <= 1 + 1e-5))
      # per cluster: ours and imbalanced-learn's synthetic rows of class c
      rb = rd.locate(ref_new_x[ref_new_y == c], x, bases, nbs)[0]
      np.testing.assert_array_equal(np.bincount(cl[b], minlength=8),
                                    np.bincount(cl[rb], minlength=8), err_msg=set_name)
  assert both >= 2


def _small_set(counts, seed, d=3, shift=2.0):
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int32)
  x = (rng.normal(size=(len(y), d)) + shift * y[:, None]).astype(np.float32)
  return x, y


# The case (counts [60, 4], D = 3) and others, all on 3 labels padded to 108 rows.
SMALL_SETS = [([60, 4], 0), ([60, 4], 1), ([60, 4], 2), ([60, 4], 3), ([30, 6], 0),
              ([50, 5, 5], 0), ([50, 5, 5], 2), ([100, 8], 0)]


def test_kmeans_smote_small_sets_fall_back_exactly_where_imblearn_raises_on_our_clusters():
  """Where a run falls back and imbalanced-learn's own run (its MiniBatchKMeans)
  does not, the difference is the clustering: on our clusters imbalanced-learn
  raises too, and otherwise gives our counts."""
  n = 108
  xs = np.zeros((len(SMALL_SETS), n, 3), np.float32)
  ys = np.zeros((len(SMALL_SETS), n), np.int32)
  ms = np.zeros((len(SMALL_SETS), n), bool)
  for i, (counts, seed) in enumerate(SMALL_SETS):
    x, y = _small_set(counts, seed)
    xs[i, :len(y)], ys[i, :len(y)], ms[i, :len(y)] = x, y, True
  keys = jax.random.split(jax.random.key(1), len(SMALL_SETS))
  xo, yo, mo, fb, cl = jax.device_get(_kmeans_smote_with_clusters(3, n)(keys, xs, ys, ms))[:5]
  outcomes = set()
  for i, (counts, seed) in enumerate(SMALL_SETS):
    x, y = _small_set(counts, seed)
    ref = _imblearn_on_clusters(x, y, cl[i, :len(y)])
    assert bool(fb[i]) == (ref is None), (counts, seed)
    ours = np.bincount(yo[i][mo[i]], minlength=3)[:len(counts)]
    if ref is None:  # a class with no eligible cluster stays as it is (binary: nothing grows)
      assert np.all(ours >= counts) and ours[0] == counts[0]
      if len(counts) == 2:
        np.testing.assert_array_equal(ours, counts)
    else:
      np.testing.assert_array_equal(ours, np.bincount(ref[1], minlength=len(counts)))
    outcomes.add(bool(fb[i]))
  assert outcomes == {True, False}  # both outcomes are exercised


def test_svm_support_vectors_close_to_sklearn_svc():
  ours = rd.on_batch(lambda x, y, m: svm.support_vectors(x, y, m, num_classes=rd.K),
                       'svm_support')
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    ref = np.zeros(len(y), bool)
    ref[SVC().fit(x, y).support_] = True
    jaccard = (ours[set_name] & ref).sum() / (ours[set_name] | ref).sum()
    assert jaccard >= 0.85, (set_name, jaccard)


@pytest.mark.parametrize('set_name', rd.NAMES)
def test_svm_smote_points_and_counts(set_name):
  """Danger seeds interpolate (t in [0, 1)), safe ones extrapolate (t in (-0.5, 0]);
  counts are within the tolerance set by the Beta(10, 10) draw and the support set."""
  x, y = rd.dataset(set_name)
  out = rd.run('svm_smote')[set_name]
  sv = rd.on_batch(lambda x, y, m: svm.support_vectors(x, y, m, num_classes=rd.K),
                       'svm_support')[set_name]
  located = _segments(set_name, out, lambda c: np.flatnonzero(sv & (y == c)),
                      lambda c, b: rd.knn(x, 5, b, np.flatnonzero(y == c)))
  knn = {c: dict(zip(np.flatnonzero(y == c), rd.knn(x, 5, np.flatnonzero(y == c),
                                                      np.flatnonzero(y == c))))
         for c in np.unique(y)}
  for c, b, nb, t in located:
    ok = (t >= -0.5 - 1e-5) & (t <= 1 + 1e-5)
    # A mutual-neighbour segment is also found from its other end: t' = 1 - t.
    rev = (t > 1) & (t <= 1.5 + 1e-5) & sv[nb] & np.array(
        [bb in knn[c][n] for bb, n in zip(b, nb)])
    assert np.all(ok | rev), t[~(ok | rev)]
  # Counts (the Beta draw's split is tested against imbalanced-learn's draws in
  # test_svm_smote_given_svcs_support_and_beta_draws_equals_imblearn): a class whose
  # usable support vectors are both danger and safe reaches the majority exactly,
  # one with none stays, one with a single group gets only that group's share.
  ours = _counts(out)
  before = rd.counts(y)
  danger = _danger(set_name)
  noise = _noise(set_name)
  usable = sv & ~noise
  for c in np.flatnonzero(before > 0):
    has_d, has_s = np.any(usable & danger & (y == c)), np.any(usable & ~danger & (y == c))
    if has_d and has_s:
      assert ours[c] == before.max(), (set_name, c)
    elif not (has_d or has_s):
      assert ours[c] == before[c], (set_name, c)
    else:
      assert before[c] <= ours[c] <= before.max(), (set_name, c)


def _imblearn_svm_fractions(set_name):
  """The Beta(10, 10) fraction imbalanced-learn's SVMSMOTE(random_state=0) draws per
  grown class: one draw per class, in its sampling_strategy_ order (the order
  labels first appear in y), from one RandomState(0)."""
  x, y = rd.dataset(set_name)
  ref = ios.SVMSMOTE(random_state=0)
  ref.fit_resample(x, y)
  rs = np.random.RandomState(0)
  frac = np.zeros(rd.K, np.float32)
  for c, n in ref.sampling_strategy_.items():
    if n > 0:
      frac[c] = rs.beta(10, 10)
  return frac


def _danger_and_safe_counts(set_name, x_new, y_new, bases, knn):
  """Per class, (rows on a seed -> neighbour segment, rows extrapolated away from
  the neighbour): t in [0, 1] is danger, t < 0 (or t > 1, the same point seen
  from the neighbour's end) is safe."""
  x, _ = rd.dataset(set_name)
  out = np.zeros((rd.K, 2), int)
  for c in np.unique(y_new):
    b = bases[c]
    _, _, t, r = rd.locate(x_new[y_new == c], x, b, knn[c])
    assert np.all(r < 1e-4), (set_name, c, r.max())
    danger = (t >= 0) & (t <= 1)
    out[c] = danger.sum(), (~danger).sum()
  return out


def test_svm_smote_given_svcs_support_and_beta_draws_equals_imblearn():
  """With scikit-learn SVC's support vectors and imbalanced-learn's Beta draws,
  the class counts, the fallback and each class's split into interpolated
  (danger) and extrapolated (safe) rows equal imbalanced-learn's exactly."""
  xs, ys, ms = rd.batch()
  sv = np.zeros(ys.shape, bool)
  frac = np.zeros((len(rd.NAMES), rd.K), np.float32)
  for i, set_name in enumerate(rd.NAMES):
    x, y = rd.dataset(set_name)
    sv[i, SVC().fit(x, y).support_] = True
    frac[i] = _imblearn_svm_fractions(set_name)
  slots = rd.make('svm_smote').capacity - rd.N
  fn = functools.partial(smote_variants.svm_smote_given, num_classes=rd.K, num_slots=slots)
  keys = jax.vmap(lambda k: jax.random.split(k, 4))(jax.random.split(jax.random.key(0), 5))
  xo, yo, mo, fb = jax.device_get(jax.jit(jax.vmap(fn))(keys, xs, ys, ms, sv, frac))
  split_seen = 0
  for i, set_name in enumerate(rd.NAMES):
    x, y = rd.dataset(set_name)
    ref = _ref('svm_smote', set_name)
    assert bool(fb[i]) == (ref is None), set_name
    if ref is None:
      continue
    ours = rd.counts(yo[i][mo[i]])
    np.testing.assert_array_equal(ours, rd.counts(ref[1]), err_msg=set_name)
    usable = sv[i, :len(y)] & ~_noise(set_name)
    bases = {c: np.flatnonzero(usable & (y == c)) for c in range(rd.K)}
    knn = {c: rd.knn(x, 5, bases[c], np.flatnonzero(y == c)) for c in range(rd.K)
           if len(bases[c])}
    new = mo[i, rd.N:]
    got = _danger_and_safe_counts(set_name, xo[i, rd.N:][new], yo[i, rd.N:][new], bases, knn)
    want = _danger_and_safe_counts(set_name, ref[0][len(y):], ref[1][len(y):], bases, knn)
    np.testing.assert_array_equal(got, want, err_msg=set_name)
    split_seen += int(np.any((want[:, 0] > 0) & (want[:, 1] > 0)))
  assert split_seen >= 2


def test_kmeans_smote_allocation_equals_imblearns_rules_on_our_clusters():
  """Given our clusters, eligibility (balance threshold, k + 1 class rows), sparsity
  weights and per-cluster ceilings are exactly imbalanced-learn's loop."""
  res = _kmeans_smote_on_data_sets()
  tool = ios.KMeansSMOTE()
  checked = 0
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    i = rd.NAMES.index(set_name)
    clusters, alloc, fallback = res[4][i, :len(y)], res[5][i], res[6][i]
    before = rd.counts(y)
    deficits = np.where(before > 0, before.max() - before, 0)
    want = np.zeros((rd.K, 8), np.int64)
    raised = False
    for c in np.flatnonzero(deficits):
      valid, sparsity = [], []
      for j in range(8):
        members = np.flatnonzero(clusters == j)
        if members.size == 0:
          continue
        share = np.mean(y[members] == c)
        if share < deficits[c] / deficits.sum() / 2 or share * members.size < 3:
          continue
        valid.append(j)
        sparsity.append(tool._find_cluster_sparsity(x[members][y[members] == c]))
      raised |= not valid
      for j, s in zip(valid, sparsity):
        want[c, j] = math.ceil(deficits[c] * s / np.sum(sparsity))
    np.testing.assert_array_equal(np.asarray(alloc).reshape(rd.K, 8), want, err_msg=set_name)
    assert bool(fallback) == raised, set_name
    checked += int(want.sum() > 0)
  assert checked >= 2
