"""RandomUnderSampler, NearMiss-1/2/3, ClusterCentroids against imbalanced-learn 0.14."""
import numpy as np
import pytest
from imblearn import under_sampling as ius
from sklearn.cluster import KMeans

from tests import resample_data as rd


@pytest.mark.parametrize('version', [1, 2, 3])
def test_nearmiss_kept_rows_equal_imblearn(version):
  out = rd.run(f'nearmiss{version}')
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    ref = ius.NearMiss(version=version)
    ref.fit_resample(x, y)
    expected = np.zeros(len(y), bool)
    expected[ref.sample_indices_] = True
    np.testing.assert_array_equal(out[set_name]['keep'], expected, err_msg=set_name)


def test_random_under_counts_equal_imblearn_and_rows_are_a_uniform_subset():
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    _, y_ref = ius.RandomUnderSampler(random_state=0).fit_resample(x, y)
    np.testing.assert_array_equal(rd.counts(y[rd.run('random_under')[set_name]['keep']]),
                                  rd.counts(y_ref))
  # Over 20 seeds every majority row of the IR-20 set is kept about 20 * 6/120 = 1 time:
  # the keep counts are binomial(20, 0.05); a chi-square on their sum by row block.
  x, y = rd.dataset('multi_ir20_d32')
  hits = sum(rd.run('random_under', seed=s)['multi_ir20_d32']['keep'].astype(int)
             for s in range(20))
  maj = np.flatnonzero(y == 0)
  assert hits[maj].sum() == 20 * 6
  blocks = hits[maj].reshape(6, 20).sum(1)  # 6 blocks of 20 rows, expected 20 each
  from scipy import stats
  assert stats.chisquare(blocks).pvalue > 0.01


def test_cluster_centroids_counts_and_kmeans_quality():
  """Counts equal imbalanced-learn's; minority rows kept as they are; the
  centroids' inertia is within 10% of scikit-learn KMeans on the same class."""
  out = rd.run('cluster_centroids')
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    o = out[set_name]
    _, y_ref = ius.ClusterCentroids(random_state=0).fit_resample(x, y)
    ours_y = o['y_in'][o['keep']]
    np.testing.assert_array_equal(rd.counts(ours_y), rd.counts(y_ref))
    before = rd.counts(y)
    minority = int(np.argmin(np.where(before > 0, before, np.inf)))
    m = before[minority]
    np.testing.assert_array_equal(o['x_in'][y == minority], x[y == minority])
    for c in np.flatnonzero((before > 0) & (np.arange(rd.K) != minority))[:3]:
      members = x[y == c]
      centers = o['x_in'][o['keep'] & (y == c)]
      ours = np.sum(np.min(((members[:, None] - centers[None]) ** 2).sum(-1), 1))
      theirs = KMeans(n_clusters=m, random_state=0).fit(members).inertia_
      assert ours <= 1.1 * theirs, (set_name, c, ours, theirs)
      # Converged Lloyd: every centroid is the mean of the members nearest to it (NumPy).
      nearest = np.argmin(((members[:, None] - centers[None]) ** 2).sum(-1), 1)
      for j in np.unique(nearest):
        np.testing.assert_allclose(centers[j], members[nearest == j].mean(0), atol=1e-4,
                                   err_msg=f'{set_name} class {c} centre {j}')
