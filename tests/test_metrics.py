import numpy as np
import pytest
from imblearn import metrics as imb
from sklearn import metrics as skm

from fedar_jax import metrics


def _ours(y_true, y_pred, k):
  cm = metrics.confusion_matrix(np.asarray(y_true, np.int32), np.asarray(y_pred, np.int32),
                                np.ones(len(y_true), bool), k)
  return {n: np.asarray(v) for n, v in metrics.from_confusion(cm).items()}, np.asarray(cm)


def _reference(y_true, y_pred):
  return {
      'accuracy': skm.accuracy_score(y_true, y_pred),
      'sensitivity': imb.sensitivity_score(y_true, y_pred, average='macro'),
      'specificity': imb.specificity_score(y_true, y_pred, average='macro'),
      'precision': skm.precision_score(y_true, y_pred, average='macro', zero_division=0),
      'f1': skm.f1_score(y_true, y_pred, average='macro', zero_division=0),
      'gmean': imb.geometric_mean_score(y_true, y_pred, average='macro'),
      'gmean_multiclass': imb.geometric_mean_score(y_true, y_pred),
  }


CASES = {
    'random_binary': (lambda r: (r.integers(0, 2, 200), r.integers(0, 2, 200)), 2),
    'random_7': (lambda r: (r.integers(0, 7, 300), r.integers(0, 7, 300)), 7),
    'class_never_predicted': (lambda r: (r.integers(0, 4, 100), r.integers(0, 3, 100)), 4),
    'class_absent_from_truth': (lambda r: (r.integers(0, 3, 100), r.integers(0, 4, 100)), 4),
    'class_absent_everywhere': (lambda r: (r.integers(0, 3, 100), r.integers(0, 3, 100)), 5),
    'all_one_prediction': (lambda r: (r.integers(0, 3, 50), np.zeros(50, int)), 3),
    'perfect': (lambda r: (np.arange(30) % 3, np.arange(30) % 3), 3),
}


@pytest.mark.filterwarnings('ignore')
@pytest.mark.parametrize('case', sorted(CASES))
def test_metrics_match_imblearn_and_sklearn(case):
  make, k = CASES[case]
  y_true, y_pred = make(np.random.default_rng(0))
  ours, cm = _ours(y_true, y_pred, k)
  np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=range(k)))
  for name, want in _reference(y_true, y_pred).items():
    assert ours[name] == pytest.approx(want, abs=1e-6), name
  recall = skm.recall_score(y_true, y_pred, labels=range(k), average=None, zero_division=0)
  np.testing.assert_allclose(ours['recall'], recall, atol=1e-6)


def test_masked_rows_are_ignored():
  y_true = np.array([0, 1, 1, 0], np.int32)
  y_pred = np.array([0, 1, 0, 1], np.int32)
  cm = metrics.confusion_matrix(y_true, y_pred, np.array([True, True, False, False]), 2)
  np.testing.assert_array_equal(np.asarray(cm), [[1, 0], [0, 1]])
