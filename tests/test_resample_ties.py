"""Parity with imbalanced-learn where counts tie or classes are tiny (issue cases)."""
import functools
import warnings

import jax
import numpy as np
import pytest
from imblearn import under_sampling as ius

from fedar_jax import resample
from fedar_jax.resample import cleaning
from tests import test_resample_cleaning


def _tied_set(seed=0):
  """Counts [36, 24, 24], K = 3, D = 3, label 2 first in y (imbalanced-learn's
  Counter then names 2 the minority; np.unique order leaves class 1 alone)."""
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.repeat([0, 1, 2], [36, 24, 24])).astype(np.int32)
  first2 = np.flatnonzero(y == 2)[0]
  y[[0, first2]] = y[[first2, 0]]
  assert y[0] == 2
  x = (rng.normal(size=(len(y), 3)) + y[:, None]).astype(np.float32)
  return x, y


def _kept(sampler, n):
  keep = np.zeros(n, bool)
  keep[sampler.sample_indices_] = True
  return keep


@pytest.mark.parametrize('version', [1, 2, 3])
def test_nearmiss_picks_imblearns_minority_among_tied_counts(version):
  x, y = _tied_set()
  r = resample.make_resampler(f'nearmiss{version}', num_classes=3, capacity=len(y))
  keep = np.asarray(jax.jit(r.resample)(jax.random.key(0), x, y, np.ones(len(y), bool))[2])
  ref = ius.NearMiss(version=version)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    ref.fit_resample(x, y)
  np.testing.assert_array_equal(keep, _kept(ref, len(y)))


def test_oss_picks_imblearns_minority_among_tied_counts():
  x, y = _tied_set()
  ref = ius.OneSidedSelection(random_state=0)
  ref.fit_resample(x, y)
  # imbalanced-learn's seed draws: one per acted-on class (0 and 2), in label order.
  rs = np.random.RandomState(0)
  ranks = np.zeros(3, np.int32)
  for c in (0, 2):
    ranks[c] = rs.randint(low=0, high=np.sum(y == c), size=1)[0]
  out = jax.jit(functools.partial(cleaning.oss_given_seeds, num_classes=3))(
      x, y, np.ones(len(y), bool), ranks)
  np.testing.assert_array_equal(np.asarray(out[2]), _kept(ref, len(y)))


def _iht(counts, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int32)
  x = (rng.normal(size=(len(y), 3)) + y[:, None]).astype(np.float32)
  r = resample.make_resampler('iht', num_classes=len(counts), capacity=len(y))
  key, mask = jax.random.key(seed), np.ones(len(y), bool)
  _, _, keep, fell_back = jax.jit(r.resample)(key, x, y, mask)
  keep = np.asarray(keep)
  ours = np.bincount(y[keep], minlength=len(counts))
  scores = np.asarray(jax.jit(functools.partial(cleaning.cv_parzen_log_odds,
                                                num_classes=len(counts)))(key, x, y, mask))
  on_scores = test_resample_cleaning.imblearn_iht_on_scores(x, y, scores)
  if on_scores is not None:  # imbalanced-learn's rule on our scores keeps our rows
    np.testing.assert_array_equal(keep, on_scores)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      _, y_ref = ius.InstanceHardnessThreshold(random_state=0).fit_resample(x, y)
    theirs = np.bincount(y_ref, minlength=len(counts))
  except ValueError:
    theirs = None
  return ours, theirs, bool(fell_back)


@pytest.mark.parametrize('counts', [[7, 1], [60, 4], [20, 5, 3], [12, 2]])
def test_iht_falls_back_only_where_imblearn_raises(counts):
  ours, theirs, fell_back = _iht(counts)
  assert theirs is not None and not fell_back
  # continuous scores: exactly the minority count per class (the forest's ties keep
  # more: README); the kept rows are imbalanced-learn's rule on our scores (in _iht)
  np.testing.assert_array_equal(ours, np.full(len(counts), min(counts)))


def test_iht_kept_count_equals_imblearn_with_a_one_row_class_and_raises_like_it():
  ours, theirs, _ = _iht([7, 1])
  np.testing.assert_array_equal(ours, theirs)           # [1, 1], not [2, 1]
  ours, theirs, fell_back = _iht([4, 2])                 # every class < 5 folds
  assert theirs is None and fell_back
