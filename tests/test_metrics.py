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


def _client_reference(y_true, y_pred):
  """A client's (G-mean, minority recall) by imbalanced-learn / scikit-learn: the rarest
  class of its truth (ties: lowest index)."""
  classes, counts = np.unique(y_true, return_counts=True)
  rarest = classes[np.argmin(counts)]
  recall = skm.recall_score(y_true, y_pred, labels=[rarest], average=None, zero_division=0)[0]
  return imb.geometric_mean_score(y_true, y_pred, average='macro'), recall


@pytest.mark.filterwarnings('ignore')
def test_per_client_scores_match_imblearn_per_client():
  rng = np.random.default_rng(7)
  k, n = 4, 30
  # Clients: imbalanced, lacking a class, one real class only, tied rarest classes, padded.
  y = np.stack([rng.choice(k, n, p=[0.6, 0.25, 0.1, 0.05]), rng.integers(0, 3, n),
                np.full(n, 2), np.repeat([0, 1, 3], [12, 6, 12]),
                rng.integers(0, k, n)]).astype(np.int32)
  mask = np.ones(y.shape, bool)
  mask[4, 20:] = False  # Padding rows: never counted.
  logits = rng.normal(size=(len(y), n, k)).astype(np.float32)
  out = metrics.evaluate_clients(lambda params, x: x, None, logits, y, mask, k)
  assert set(out) == set(metrics.CLIENT_METRIC_NAMES)
  for c in range(len(y)):
    real = mask[c]
    gmean, recall = _client_reference(y[c, real], logits[c, real].argmax(-1))
    np.testing.assert_allclose(out['client_gmean'][c], gmean, atol=1e-6, err_msg=str(c))
    np.testing.assert_allclose(out['client_minority_recall'][c], recall, atol=1e-6,
                               err_msg=str(c))


def test_minority_class_is_the_rarest_present_lowest_index_on_ties():
  cm = np.array([[5, 0, 0], [0, 0, 0], [1, 1, 0]], np.int32)  # class 1 absent; 2 has 2 rows
  assert float(metrics.client_scores(cm)['client_minority_recall']) == 0.0
  cm = np.array([[2, 0, 0], [0, 0, 0], [1, 1, 0]], np.int32)  # 0 and 2 tie: class 0
  assert float(metrics.client_scores(cm)['client_minority_recall']) == 1.0
