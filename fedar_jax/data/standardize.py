"""Feature scaling before resampling and training (`--standardize`).

  none       the features as loaded.
  client     every client z-scores its rows with the mean and standard deviation
             of its own real rows (nothing leaves the client); the test set is
             scaled the same way by its own statistics (it is one more party).
  federated  one population mean and standard deviation, computed from per-client
             sums (row count, sum, sum of squares: what a secure-aggregation round
             would reveal), applied to every client and to the test set.

Statistics are per feature (every entry of a row's trailing shape), in float64 on
the host; a feature with zero spread is only centred. Padding rows are set to 0.
"""
from typing import Callable

import numpy as np

from fedar_jax.data.federated import ClientData, TestData

MODES = ('none', 'client', 'federated')


def moments(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(count, sum, sum of squares) of the real rows of x[..., N, F...] over the row axis.

  mask: bool[..., N]. Returns float64 arrays shaped [...], [..., F...], [..., F...].
  """
  w = mask.astype(np.float64).reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
  xf = x.astype(np.float64) * w
  row_axis = mask.ndim - 1
  return (np.sum(mask, axis=-1).astype(np.float64), np.sum(xf, axis=row_axis),
          np.sum(xf * x.astype(np.float64), axis=row_axis))


def mean_std(count, total, total_sq):
  """Mean and standard deviation (population, ddof 0) from moments; std 0 -> 1."""
  count = np.maximum(count, 1.0)
  count = count.reshape(np.shape(count) + (1,) * (np.ndim(total) - np.ndim(count)))
  mean = total / count
  var = np.maximum(total_sq / count - mean * mean, 0.0)
  std = np.sqrt(var)
  return mean, np.where(std > 0, std, 1.0)


def scale(x, mask, mean, std):
  """(x - mean) / std on the real rows, 0 on padding, float32. mean/std broadcast
  over the row axis (shapes [..., F...])."""
  row_axis = mask.ndim - 1
  z = (x.astype(np.float64) - np.expand_dims(mean, row_axis)) / np.expand_dims(std, row_axis)
  w = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
  return np.where(w, z, 0.0).astype(np.float32)


def standardize(data, mode: str, global_sum: Callable[[np.ndarray], np.ndarray] = lambda a: a):
  """`data` with its client and test features scaled as `mode` says (see module doc).

  Args:
    data: a `load.FederatedDataset`: clients x float32[C, N, F...] (y, mask [C, N]); test x float32[T, F...].
    mode: one of MODES.
    global_sum: sums an array over all processes (multi-host `federated`, where
      each process holds only its clients); identity in one process.
  """
  if mode not in MODES:
    raise ValueError(f'unknown standardize mode {mode!r}; allowed: {", ".join(MODES)}')
  if mode == 'none':
    return data
  c, t = data.clients, data.test
  if mode == 'client':
    mean, std = mean_std(*moments(c.x, c.mask))
    test_mean, test_std = mean_std(*moments(t.x, t.mask))
  else:
    count, total, total_sq = moments(c.x, c.mask)
    pooled = [global_sum(np.asarray(a.sum(axis=0))) for a in (count, total, total_sq)]
    test_mean, test_std = mean_std(*pooled)
    mean = np.broadcast_to(test_mean, c.x.shape[:1] + test_mean.shape)
    std = np.broadcast_to(test_std, c.x.shape[:1] + test_std.shape)
  clients = ClientData(scale(c.x, c.mask, mean, std), c.y, c.mask, c.client_id)
  test = TestData(scale(t.x, t.mask, test_mean, test_std), t.y, t.mask)
  return data._replace(clients=clients, test=test)
