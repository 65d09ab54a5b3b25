"""RandomUnderSampler, NearMiss-1/2/3, ClusterCentroids against imbalanced-learn 0.14."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from imblearn import under_sampling as ius
from sklearn.cluster import KMeans, kmeans_plusplus

from fedar_jax.resample import kmeans
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


def _classes_to_shrink(y):
  before = rd.counts(y)
  minority = int(np.argmin(np.where(before > 0, before, np.inf)))
  return minority, before[minority], np.flatnonzero((before > 0) & (np.arange(rd.K) != minority))


def test_cluster_centroids_counts_and_converged_centroids():
  """Counts equal imbalanced-learn's; minority rows kept as they are; every centroid
  is the mean of the class rows nearest to it (a Lloyd fixed point, in NumPy)."""
  out = rd.run('cluster_centroids')
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    o = out[set_name]
    _, y_ref = ius.ClusterCentroids(random_state=0).fit_resample(x, y)
    np.testing.assert_array_equal(rd.counts(o['y_in'][o['keep']]), rd.counts(y_ref))
    minority, m, shrink = _classes_to_shrink(y)
    np.testing.assert_array_equal(o['x_in'][y == minority], x[y == minority])
    for c in shrink:
      members = x[y == c]
      centers = o['x_in'][o['keep'] & (y == c)]
      assert len(centers) == m
      nearest = np.argmin(((members[:, None] - centers[None]) ** 2).sum(-1), 1)
      for j in np.unique(nearest):
        np.testing.assert_allclose(centers[j], members[nearest == j].mean(0), atol=1e-4,
                                   err_msg=f'{set_name} class {c} centre {j}')


def test_lloyd_from_scikit_learns_seeds_equals_its_kmeans():
  """From scikit-learn's k-means++ seeds, our Lloyd iterations (ClusterCentroids',
  KMeansSMOTE's) reach scikit-learn KMeans' centres and labels (Lloyd, tol 0)."""
  cases = []
  for set_name in rd.NAMES:
    x, y = rd.dataset(set_name)
    _, m, shrink = _classes_to_shrink(y)
    cases += [(set_name, c, m) for c in shrink[:2]]
  s_max = max(m for _, _, m in cases)
  xs = np.zeros((len(cases), rd.MAX_CLASS, rd.D), np.float32)
  ms = np.zeros((len(cases), rd.MAX_CLASS), bool)
  init = np.zeros((len(cases), s_max, rd.D), np.float32)
  active = np.zeros((len(cases), s_max), bool)
  for i, (set_name, c, m) in enumerate(cases):
    x, y = rd.dataset(set_name)
    members = x[y == c]
    xs[i, :len(members)], ms[i, :len(members)] = members, True
    init[i, :m] = kmeans_plusplus(members, m, random_state=0)[0]
    active[i, :m] = True
  lloyd = jax.jit(jax.vmap(lambda x, m, c0, a: kmeans.lloyd(
      x, m, jnp.zeros(x.shape[0], jnp.int32), c0, jnp.zeros(c0.shape[0], jnp.int32), a)))
  centers, labels = jax.device_get(lloyd(xs, ms, init, active))
  for i, (set_name, c, m) in enumerate(cases):
    members = xs[i][ms[i]]
    ref = KMeans(n_clusters=m, init=init[i, :m], n_init=1, tol=0, algorithm='lloyd',
                 max_iter=100).fit(members)
    np.testing.assert_array_equal(labels[i][ms[i]], ref.labels_, err_msg=f'{set_name} {c}')
    np.testing.assert_allclose(centers[i, :m], ref.cluster_centers_, atol=1e-5,
                               err_msg=f'{set_name} {c}')
