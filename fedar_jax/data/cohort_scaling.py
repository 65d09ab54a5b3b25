"""--standardize applied to a `CohortSource`'s cohorts, as the in-memory run applies it.

`standardized(source, mode)` gives a CohortSource whose cohorts and test set equal,
bit for bit, the rows `standardize.standardize` gives the in-memory population:
`client` scales each client by its own rows (and the test set by its own), so a
cohort needs nothing else; `federated` scales by the population's moments, which
the source carries (`population_store.PopulationStore.moments`, or
`population_moments` of an in-memory population).
"""
import numpy as np

from fedar_jax.data import standardize as standardize_lib
from fedar_jax.data.federated import ClientData, TestData


def population_moments(x: np.ndarray, mask: np.ndarray):
  """(count, sum, sum_sq) float64: the pooled moments of the real rows of x[C, N, F...]
  (mask bool[C, N]), summed over clients as `standardize.standardize` sums them."""
  count, total, total_sq = standardize_lib.moments(x, mask)
  return tuple(np.asarray(a.sum(axis=0)) for a in (count, total, total_sq))


class StandardizedSource:
  """`source` (a CohortSource) with --standardize=`mode` applied to cohorts and test set.

  moments: (count, sum, sum_sq) for `federated` (default `source.moments`).
  """

  def __init__(self, source, mode: str, moments=None):
    if mode not in standardize_lib.MODES:
      raise ValueError(f'unknown standardize mode {mode!r}; allowed: '
                       f'{", ".join(standardize_lib.MODES)}')
    self.source, self.mode = source, mode
    self.num_clients, self.capacity = source.num_clients, source.capacity
    self.row_shape, self.class_names = source.row_shape, source.class_names
    # The resampler's bound (train.build_streamed), unchanged by scaling.
    self.max_class_count = getattr(source, 'max_class_count', None)
    t = source.test
    if mode == 'federated':
      self._mean, self._std = standardize_lib.mean_std(
          *(moments if moments is not None else source.moments))
      test_mean, test_std = self._mean, self._std
    else:
      test_mean, test_std = standardize_lib.mean_std(*standardize_lib.moments(t.x, t.mask))
    self.test = TestData(standardize_lib.scale(t.x, t.mask, test_mean, test_std),
                         t.y, t.mask)

  def cohort(self, client_ids) -> ClientData:
    """The source's cohort (x float32[P, N, *row_shape]) scaled as the in-memory run scales."""
    c = self.source.cohort(client_ids)
    if self.mode == 'client':
      mean, std = standardize_lib.mean_std(*standardize_lib.moments(c.x, c.mask))
    else:
      shape = c.x.shape[:1] + self._mean.shape
      mean, std = np.broadcast_to(self._mean, shape), np.broadcast_to(self._std, shape)
    return c._replace(x=standardize_lib.scale(c.x, c.mask, mean, std))

  def attackers(self, client_ids):
    return self.source.attackers(client_ids)


def standardized(source, mode: str, moments=None):
  """`source` as the run trains on it under --standardize=`mode` ('none': `source` itself)."""
  return source if mode == 'none' else StandardizedSource(source, mode, moments)
