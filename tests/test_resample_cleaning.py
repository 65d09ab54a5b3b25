"""Cleaning rules and prototype selection against imbalanced-learn 0.14: the kept rows."""
import functools

import jax
import numpy as np
import pytest
from imblearn import under_sampling as ius

from fedar_jax.resample import cleaning
from tests import resample_data as rd

SELECTIONS = {
    'tomek': ius.TomekLinks,
    'enn': ius.EditedNearestNeighbours,
    'renn': ius.RepeatedEditedNearestNeighbours,
    'allknn': ius.AllKNN,
    'ncr': ius.NeighbourhoodCleaningRule,
}


def _kept(sampler, n):
  keep = np.zeros(n, bool)
  keep[sampler.sample_indices_] = True
  return keep


@pytest.mark.parametrize('name', list(SELECTIONS))
def test_kept_rows_equal_imblearn(name):
  out = rd.run(name)
  removed_somewhere = False
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    ref = SELECTIONS[name]()
    ref.fit_resample(x, y)
    expected = _kept(ref, len(y))
    np.testing.assert_array_equal(out[set_name]['keep'], expected, err_msg=set_name)
    assert len(out[set_name]['y_new']) == 0 and not out[set_name]['fallback']
    removed_somewhere |= not expected.all()
  assert removed_somewhere


def _imblearn_seed_ranks(set_name, seed=0):
  """The in-class seed ranks imbalanced-learn's CNN/OSS draw with random_state=seed."""
  _, y = rd.dataset(set_name)
  counts = rd.counts(y)
  minority = int(np.argmin(np.where(counts > 0, counts, np.inf)))
  rs = np.random.RandomState(seed)
  ranks = np.zeros(rd.K, np.int32)
  for c in np.unique(y):
    if c != minority:
      ranks[c] = rs.randint(low=0, high=counts[c], size=1)[0]
  return ranks


@functools.lru_cache(maxsize=None)
def _given_seeds(name):
  fn = cleaning.oss_given_seeds if name == 'oss' else cleaning.cnn_given_seeds
  xs, ys, ms = rd.batch()
  ranks = np.stack([_imblearn_seed_ranks(n) for n in rd.NAMES])
  out = jax.jit(jax.vmap(functools.partial(fn, num_classes=rd.K)))(xs, ys, ms, ranks)
  keep = np.asarray(out[2])
  return {n: keep[i, :len(rd.dataset(n)[1])] for i, n in enumerate(rd.NAMES)}


def test_oss_kept_rows_equal_imblearn_given_its_seed_rows():
  ours = _given_seeds('oss')
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    ref = ius.OneSidedSelection(random_state=0)
    ref.fit_resample(x, y)
    np.testing.assert_array_equal(ours[set_name], _kept(ref, len(y)), err_msg=set_name)


def _hart_reference(x, y, ranks):
  """Hart's condensing, one pass per non-minority class, with a plain loop (1-NN)."""
  counts = rd.counts(y)
  minority = int(np.argmin(np.where(counts > 0, counts, np.inf)))
  keep = y == minority
  for c in np.unique(y):
    if c == minority:
      continue
    members = np.flatnonzero(y == c)
    store = list(np.flatnonzero(y == minority)) + [members[ranks[c]]]
    for i in members:
      if i in store:
        continue
      d = np.sum((x[store] - x[i]) ** 2, axis=1)
      nearest = store[int(np.argmin(d))]
      if y[nearest] != c:
        store.append(i)
    keep[[s for s in store if y[s] == c]] = True
  return keep


def _imblearn_cnn_loop(x, y, ranks, fix_index_mixup):
  """imbalanced-learn 0.14's CondensedNearestNeighbour loop, line for line (1-NN
  classifier refitted on the store), given its seed ranks. Its skip list
  `good_classif_label` mixes global row indices (the store) with in-class
  positions (the rows the store classifies right) and is tested against in-class
  positions; `fix_index_mixup` keeps it in in-class positions throughout."""
  from sklearn.neighbors import KNeighborsClassifier
  counts = rd.counts(y)
  minority = int(np.argmin(np.where(counts > 0, counts, np.inf)))
  keep = y == minority
  for c in np.unique(y):
    if c == minority:
      continue
    idx_maj = np.flatnonzero(y == c)
    sample = [idx_maj[ranks[c]]]
    store = list(np.flatnonzero(y == minority)) + sample
    knn = KNeighborsClassifier(n_neighbors=1).fit(x[store], y[store])
    as_pos = lambda rows: np.searchsorted(idx_maj, rows) if fix_index_mixup else rows
    good = set(as_pos(np.array(sample)).tolist())
    for pos, i in enumerate(idx_maj):
      if pos in good:
        continue
      if knn.predict(x[i:i + 1])[0] != c:
        sample.append(i)
        store.append(i)
        knn.fit(x[store], y[store])
        right = np.flatnonzero(knn.predict(x[idx_maj]) == c)
        good = set(as_pos(np.array(sample)).tolist()) | set(right.tolist())
    keep[sample] = True
  return keep


def test_cnn_equals_harts_rule_and_imblearns_loop_without_its_index_mixup():
  """Same seed rows: ours equals a plain-loop Hart's rule, and imbalanced-learn's own
  loop with its skip-list index mix-up fixed; the loop as written reproduces
  imbalanced-learn's kept rows exactly, so the mix-up is the whole deviation."""
  ours = _given_seeds('cnn')
  differs = 0
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    ranks = _imblearn_seed_ranks(set_name)
    hart = _hart_reference(x, y, ranks)
    np.testing.assert_array_equal(ours[set_name], hart, err_msg=set_name)
    np.testing.assert_array_equal(_imblearn_cnn_loop(x, y, ranks, True), hart, err_msg=set_name)
    ref = ius.CondensedNearestNeighbour(random_state=0)
    ref.fit_resample(x, y)
    theirs = _kept(ref, len(y))
    np.testing.assert_array_equal(_imblearn_cnn_loop(x, y, ranks, False), theirs,
                                  err_msg=set_name)
    differs += int(np.any(theirs != hart))
  assert differs >= 1  # the mix-up does change rows on these sets


def test_iht_keeps_the_minority_count_per_class():
  """Our probabilities are continuous: exactly the minority count survives per
  class; imbalanced-learn's forest ties, so it keeps at least as many."""
  out = rd.run('iht')
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    before = rd.counts(y)
    m = before[before > 0].min()
    ours = rd.counts(y[out[set_name]['keep']])
    _, y_ref = ius.InstanceHardnessThreshold(random_state=0).fit_resample(x, y)
    theirs = rd.counts(y_ref)
    np.testing.assert_array_equal(ours, np.where(before > 0, m, 0))
    assert np.all(theirs >= ours)


def test_percentile_matches_numpy():
  rng = np.random.default_rng(0)
  v = rng.normal(size=20).astype(np.float32)
  valid = rng.random(20) < 0.6
  for q in (0.0, 12.5, 50.0, 83.3, 100.0):
    got = float(jax.jit(cleaning.percentile)(v, valid, q))
    np.testing.assert_allclose(got, np.percentile(v[valid], q), rtol=1e-5)
