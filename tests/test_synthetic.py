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


def test_stack_clients_unequal_sizes():
  xs = [np.ones((3, 2)), np.ones((1, 2))]
  ys = [np.array([0, 1, 1]), np.array([1])]
  data = federated.stack_clients(xs, ys)
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


def test_client_data_does_not_depend_on_the_other_clients():
  # A host of a multi-host run generates only its own clients: client c's rows
  # (and the test set) must be the same alone, in a slice, or among all.
  every, test = synthetic.synthetic_federated(3, 6, 33, 3, 12, 4, 5)
  alone, test_alone = synthetic.synthetic_federated(3, 6, 33, 3, 12, 4, 5, client_ids=[4])
  part, _ = synthetic.synthetic_federated(3, 6, 33, 3, 12, 4, 5, client_ids=range(2, 5))
  np.testing.assert_array_equal(alone.x[0], every.x[4])
  np.testing.assert_array_equal(alone.y[0], every.y[4])
  np.testing.assert_array_equal(part.x, every.x[2:5])
  np.testing.assert_array_equal(part.client_id, [2, 3, 4])
  np.testing.assert_array_equal(test_alone.x, test.x)
  counts = synthetic.imbalanced_counts(33, 3, 4)
  for c in range(6):
    assert np.bincount(every.y[c], minlength=3).tolist() == counts.tolist()
  assert not np.array_equal(every.x[0], every.x[1])


def test_noise_is_normal():
  # The quantile-table noise alone (no latent part): i.i.d. N(0, noise^2) up to the table.
  from scipy import stats
  problem = synthetic.SyntheticProblem(np.zeros((1, 1, 1)), np.zeros((1, 50)), 2.0)
  x = problem.sample(np.zeros(2000, np.int32), np.random.default_rng(0))
  assert abs(x.mean()) < 0.03 and abs(x.std() - 2) < 0.02
  assert stats.kstest(x[:, 7] / 2, 'norm').pvalue > 0.01
  assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) < 0.1
  table = synthetic._normal_table(1.0)
  assert abs(table.mean()) < 1e-6 and abs(np.mean(table.astype(np.float64) ** 2) - 1) < 1e-6


def test_mmap_backed_clients_are_the_same(monkeypatch):
  # Large client arrays live in an anonymous mmap, populated in runs of clients
  # (_host_array): same numbers as an np.empty array, writable, freed with it.
  small, _ = synthetic.synthetic_federated(5, 300, 20, 2, 8, 4, 3)
  monkeypatch.setattr(synthetic, '_MMAP_BYTES', 0)
  big, _ = synthetic.synthetic_federated(5, 300, 20, 2, 8, 4, 3)
  owner = big.x
  while isinstance(owner, np.ndarray):
    owner = owner.base
  assert owner is not None and not small.x.base  # The mmap (through a memoryview).
  np.testing.assert_array_equal(big.x, small.x)
  np.testing.assert_array_equal(big.y, small.y)
  big.x[0, 0, 0] = 7.0
  x, populate = synthetic._host_array((3, 5000), np.float32)
  populate(0, 3)
  populate(1, 2)
  x[:] = 1.5
  assert x.sum() == 1.5 * 15000


def test_heterogeneous_ratios_are_per_client_and_within_range():
  skew = synthetic.Skew(ratio_max=20.0)
  clients, _ = synthetic.synthetic_federated(3, 40, 60, 2, 4, 2.0, 5, skew=skew)
  counts = federated.client_class_counts(clients, 2)
  ir = counts.max(1) / counts.min(1)
  assert ir.min() >= 1.9 and ir.max() <= 20.5 and len(set(ir.round(3))) > 10
  # Client c's rows depend on (seed, c) alone, with or without the others.
  alone, _ = synthetic.synthetic_federated(3, 40, 60, 2, 4, 2.0, 5, client_ids=[17], skew=skew)
  np.testing.assert_array_equal(alone.x[0], clients.x[17])
  np.testing.assert_array_equal(alone.y[0], clients.y[17])
  # No skew: the homogeneous clients, unchanged.
  plain, _ = synthetic.synthetic_federated(3, 40, 60, 2, 4, 2.0, 5)
  assert len({tuple(c) for c in federated.client_class_counts(plain, 2)}) == 1
  assert synthetic.max_class_count(60, 2, 2.0, skew) == counts.max() or (
      synthetic.max_class_count(60, 2, 2.0, skew) > counts.max())
  assert synthetic.max_class_count(60, 2, 2.0, skew) == int(
      synthetic.imbalanced_counts(60, 2, 20.0).max())


def test_dirichlet_label_skew_varies_the_class_shares():
  skew = synthetic.Skew(partition='dirichlet', alpha=0.3)
  clients, _ = synthetic.synthetic_federated(0, 30, 50, 3, 4, 10.0, 5, skew=skew)
  counts = federated.client_class_counts(clients, 3)
  assert (counts.sum(1) == 50).all() and (counts == 0).any()
  assert len({tuple(c) for c in counts}) > 20
  assert synthetic.max_class_count(50, 3, 10.0, skew) == 50
  tiny = synthetic.client_counts(0, 1, 50, 3, 10.0, synthetic.Skew(partition='dirichlet',
                                                                    alpha=1e-9))
  assert tiny.sum() == 50


def test_synthetic_partition_flags_are_validated():
  from fedar_jax.config import ConfigError, RunConfig, validate
  base = dict(num_clients=4, samples_per_client=40, feature_dim=4)
  validate(RunConfig(**base, imbalance_ratio_max=20.0))
  validate(RunConfig(**base, partition='dirichlet'))
  with pytest.raises(ConfigError, match='--partition: iid applies to real data only'):
    validate(RunConfig(**base, partition='iid'))
  with pytest.raises(ConfigError, match='--imbalance_order: applies to real data only'):
    validate(RunConfig(**base, imbalance_order='fixed'))
  with pytest.raises(ConfigError, match='--samples_per_client: 10 cannot hold .* '
                                        '--imbalance_ratio_max=50'):
    validate(RunConfig(**{**base, 'samples_per_client': 10}, imbalance_ratio_max=50.0))
