import numpy as np
import pytest

from fedar_jax.config import RunConfig
from fedar_jax.data import partition, synthetic
from fedar_jax.data.errors import DataError
from fedar_jax.data.labels import select_classes
from fedar_jax.data.load import federate
from fedar_jax.data.pool import Pool

K = 3


def labels(n_per_class=(300, 200, 100), seed=0):
  y = np.repeat(np.arange(len(n_per_class)), n_per_class)
  return np.random.default_rng(seed).permutation(y).astype(np.int32)


def assert_disjoint(parts, n):
  rows = np.concatenate(parts)
  assert len(np.unique(rows)) == len(rows) and rows.min() >= 0 and rows.max() < n


def counts(y, parts, k=K):
  return np.stack([np.bincount(y[p], minlength=k) for p in parts])


def test_carve_test_is_balanced_and_disjoint():
  y = labels()
  test, train = partition.carve_test(np.random.default_rng(0), y, K, 40, 'abc')
  np.testing.assert_array_equal(np.bincount(y[test]), [40, 40, 40])
  assert len(np.intersect1d(test, train)) == 0 and len(test) + len(train) == len(y)
  with pytest.raises(DataError, match="--test_per_class: class 'c' has 100 rows"):
    partition.carve_test(np.random.default_rng(0), y, K, 100, 'abc')


def test_iid_near_equal_and_covers_everything():
  parts = partition.iid(np.random.default_rng(0), 103, 10)
  assert_disjoint(parts, 103)
  assert sum(map(len, parts)) == 103 and {len(p) for p in parts} <= {10, 11}


def test_dirichlet_small_alpha_skews_labels_more():
  y = labels()
  def mean_max_share(alpha):
    parts = partition.dirichlet(np.random.default_rng(1), y, K, 8, alpha)
    assert_disjoint(parts, len(y))
    assert sum(map(len, parts)) == len(y)
    c = counts(y, parts)
    return np.mean(c.max(1) / c.sum(1))
  assert mean_max_share(0.1) > mean_max_share(100.0) + 0.2
  assert mean_max_share(100.0) < 0.6


def test_imbalance_gives_each_client_its_ratio_with_per_client_minority():
  y = labels((600, 600, 600))
  parts = partition.imbalance(np.random.default_rng(0), y, K, 12, 50,
                              np.full(12, 5.0), 'abc')
  assert_disjoint(parts, len(y))
  expected = sorted(synthetic.imbalanced_counts(50, K, 5.0))
  c = counts(y, parts)
  for row in c:
    assert sorted(row) == expected
  assert len({int(np.argmin(row)) for row in c}) > 1  # minority differs between clients


def test_imbalance_fixed_order_same_minority_everywhere():
  y = labels((600, 600, 600))
  parts = partition.imbalance(np.random.default_rng(0), y, K, 5, 40, np.full(5, 4.0), 'abc',
                              order='fixed')
  c = counts(y, parts)
  np.testing.assert_array_equal(c, np.tile(synthetic.imbalanced_counts(40, K, 4.0), (5, 1)))


def test_client_ratios_range():
  r = partition.client_ratios(np.random.default_rng(0), 200, 2.0, 20.0)
  assert r.min() >= 2 and r.max() <= 20 and r.std() > 1
  np.testing.assert_array_equal(partition.client_ratios(None, 3, 4.0, 0.0), [4, 4, 4])


def test_imbalance_runs_out_of_rows():
  with pytest.raises(DataError, match='--samples_per_client: the pool ran out'):
    partition.imbalance(np.random.default_rng(0), labels((50, 50, 50)), K, 10, 40,
                        np.full(10, 2.0), 'abc')


@pytest.mark.parametrize('k', [1, 2])
def test_shards_exactly_k_classes_per_client(k):
  y = labels()
  parts = partition.shards(np.random.default_rng(0), y, K, 6, k)
  assert_disjoint(parts, len(y))
  assert all(n == k for n in (counts(y, parts) > 0).sum(1))


def test_quantity_power_law_sizes():
  parts = partition.quantity(np.random.default_rng(0), 1000, 20, 1.0)
  assert_disjoint(parts, 1000)
  sizes = np.array([len(p) for p in parts])
  assert sizes.sum() == 1000 and sizes.min() >= 1 and sizes.max() > 4 * np.median(sizes)


def test_natural_one_client_per_group():
  groups = np.array([5, 7, 5, 9, 7, 5])
  parts = partition.natural(groups, 2)
  assert [p.tolist() for p in parts] == [[0, 2, 5], [1, 4]]
  with pytest.raises(DataError, match='--num_clients: 4 clients but the training rows .* hold '
                     'only 3 distinct --client_column ids; give a smaller --num_clients'):
    partition.natural(groups, 4)


def test_attacks():
  y = np.array([0] * 50 + [1] * 20 + [2] * 10)
  rows = np.arange(80)
  kept = partition.skew_attack(rows, y, 25.0)
  c = np.bincount(y[kept], minlength=3)
  assert c[0] == 50 and c[1] == 2 and c[2] == 2
  only = partition.skew_attack(rows, y, 0.0)
  assert set(y[only]) == {0}
  np.testing.assert_array_equal(partition.label_flip(np.array([0, 1, 2]), 3), [1, 2, 0])
  flags = partition.choose_attackers(np.random.default_rng(0), 10, 0.3)
  assert flags.sum() == 3


def test_select_classes_relabels_in_given_order():
  pool = Pool(np.arange(6, dtype=np.float32)[:, None], np.array([0, 1, 2, 0, 1, 2], np.int32),
              ('Angry', 'Happy', 'Sad'))
  out = select_classes(pool, (0, 3, 4), ('sad', '3'))
  assert out.class_names == ('Sad', 'Happy')
  np.testing.assert_array_equal(out.x[:, 0], [1, 2, 4, 5])
  np.testing.assert_array_equal(out.y, [1, 0, 1, 0])
  with pytest.raises(DataError, match="--classes: class 'Fear' is not in the data"):
    select_classes(pool, (0, 3, 4), ('Fear', 'Sad'))


@pytest.mark.parametrize('part', partition.PARTITIONS)
def test_federate_keeps_test_rows_away_from_clients(part):
  n = 450
  y = labels((200, 150, 100))
  pool = Pool(np.arange(n, dtype=np.float32)[:, None], y, ('a', 'b', 'c'),
              np.arange(n) % 7)
  cfg = RunConfig(dataset='latent_csv', partition=part, num_clients=5,
                  samples_per_client=30 if part in ('imbalance', 'natural') else 0,
                  imbalance_ratio=3.0, test_per_class=20, attacker_fraction=0.4,
                  attack='label_flip')
  data = federate(cfg, pool)
  ids = data.clients.x[..., 0][data.clients.mask]
  test_ids = data.test.x[:, 0]
  assert len(np.intersect1d(ids, test_ids)) == 0 and len(np.unique(ids)) == len(ids)
  np.testing.assert_array_equal(np.bincount(data.test.y), [20, 20, 20])
  assert data.attackers.sum() == 2
  # Clients' labels are the pool's, except attackers' which are flipped.
  for c in range(5):
    rows = data.clients.x[c, data.clients.mask[c], 0].astype(int)
    want = y[rows] if not data.attackers[c] else (y[rows] + 1) % 3
    np.testing.assert_array_equal(data.clients.y[c, data.clients.mask[c]], want)


def test_federate_fewer_samples_than_clients():
  pool = Pool(np.zeros((12, 1), np.float32), labels((4, 4, 4)), ('a', 'b', 'c'))
  cfg = RunConfig(dataset='latent_csv', partition='iid', num_clients=20, samples_per_client=0,
                  test_per_class=1)
  with pytest.raises(DataError, match='--num_clients: 9 training samples'):
    federate(cfg, pool)


def test_partition_summary_files(tmp_path):
  import csv
  import json
  from fedar_jax.data import federated, summary
  from fedar_jax.data.load import FederatedDataset
  clients = federated.stack_clients([np.zeros((5, 2)), np.zeros((5, 2)), np.zeros((2, 2))],
                                  [np.array([0, 0, 0, 1, 1]), np.array([0, 1, 1, 1, 1]),
                                   np.array([2, 2])])
  test = federated.TestData(np.zeros((3, 2)), np.array([0, 1, 2]), np.ones(3, bool))
  data = FederatedDataset(clients, test, ('a', 'b', 'c'), np.array([False, True, False]))
  s = summary.write_partition_summary(str(tmp_path), data)
  assert s['counts'] == [[3, 2, 0], [1, 4, 0], [0, 0, 2]]
  assert s['ir'] == [1.5, 4.0, 'inf'] and s['attacker'] == [False, True, False]
  assert s['ir_histogram']['clients'] == [1, 0, 0, 1, 0, 0, 0, 0, 0]  # (a, b]: 1.5 in [1, 1.5]
  assert s['ir_histogram']['single_class'] == 1  # Client 2 holds class c only.
  assert summary.ir_histogram([1.0, 10.0, 10.5, 250.0]).tolist() == [1, 0, 0, 0, 1, 1, 0, 0, 1]
  assert summary.ir_bin_labels(summary.IR_BINS)[4] == '(5, 10]'
  assert json.loads((tmp_path / 'partition.json').read_text())['n'] == [5, 5, 2]
  with open(tmp_path / 'partition.csv') as f:
    rows = list(csv.reader(f))
  assert rows[0] == ['client', 'n', 'count_a', 'count_b', 'count_c', 'ir', 'attacker']
  assert rows[2] == ['1', '5', '1', '4', '0', '4.0000', '1']
  assert rows[3] == ['2', '2', '0', '0', '2', 'inf', '0']
  assert (tmp_path / 'partition.png').stat().st_size > 1000
