import numpy as np
import pytest

from fedar_jax.data import federated, synthetic


@pytest.mark.parametrize('n,k,ratio', [(220, 2, 10), (110, 2, 10), (300, 7, 20), (50, 3, 1)])
def test_counts_sum_and_ratio(n, k, ratio):
  counts = synthetic.imbalanced_counts(n, k, ratio)
  assert counts.sum() == n and counts.min() >= 1
  assert counts[0] / counts[-1] == pytest.approx(ratio, rel=0.1 + 1.0 / counts[-1])


def test_too_few_samples_raise():
  assert synthetic.min_samples_for_ratio(2, 10) == 11
  synthetic.imbalanced_counts(11, 2, 10)
  with pytest.raises(ValueError, match='need at least 11'):
    synthetic.imbalanced_counts(10, 2, 10)


def test_federated_arrays_are_deterministic_and_balanced_test():
  a, ta = synthetic.synthetic_federated(1, 4, 55, 2, 16, 10, 30)
  b, tb = synthetic.synthetic_federated(1, 4, 55, 2, 16, 10, 30)
  np.testing.assert_array_equal(a.x, b.x)
  assert a.x.shape == (4, 55, 16) and a.x.dtype == np.float32
  for c in range(4):
    assert np.bincount(a.y[c]).tolist() == [50, 5]
  assert np.bincount(ta.y).tolist() == [30, 30]
  c, _ = synthetic.synthetic_federated(2, 4, 55, 2, 16, 10, 30)
  assert not np.array_equal(a.x, c.x)


def test_pad_clients_unequal_sizes():
  xs = [np.ones((3, 2)), np.ones((1, 2))]
  ys = [np.array([0, 1, 1]), np.array([1])]
  data = federated.pad_clients(xs, ys)
  assert data.x.shape == (2, 3, 2)
  np.testing.assert_array_equal(data.mask, [[1, 1, 1], [1, 0, 0]])
  assert federated.max_class_count(data, 2) == 2


def test_imbalance_costs_minority_recall():
  # The default problem must be hard enough that a learner fitted on IR-10 data
  # loses minority recall compared with one fitted on balanced data.
  from sklearn.linear_model import LogisticRegression
  problem = synthetic.make_problem(0, 2, 432)
  rng = np.random.default_rng(0)
  y_test = np.repeat([0, 1], 300)
  x_test = problem.sample(y_test, rng)

  def minority_recall(counts):
    y = np.repeat([0, 1], counts)
    clf = LogisticRegression(max_iter=500).fit(problem.sample(y, rng), y)
    return np.mean(clf.predict(x_test[y_test == 1]) == 1)

  assert minority_recall([400, 40]) < minority_recall([400, 400]) - 0.1
