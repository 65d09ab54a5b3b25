"""Where a round's cohort comes from when the population is not held in memory.

A `CohortSource` is a population of `num_clients` clients (ids 0 .. C-1) that
hands out any cohort's rows on the host: an on-disk population
(`data/population_store.py`), a virtual synthetic one (client c generated from
(seed, c)), or an in-memory `FederatedDataset` (`InMemorySource`, the reference
the others are tested against). The round program sees only the cohort, padded
to the source's capacity, exactly as it would see an in-memory population of
the cohort's size.
"""
from typing import Protocol

import numpy as np

from fedar_jax.data import federated
from fedar_jax.data.federated import ClientData, TestData, take_clients


class CohortSource(Protocol):
  """A population that gives out cohorts.

  num_clients: C, the population size. capacity: N, rows per client slot.
  row_shape: the shape of one row of x. class_names: the K class names.
  test: the balanced test set (host arrays).
  A source may also have `max_class_count` or `class_counts` int[C, K] (`max_class_count`
  below): the resamplers' static bound; without them the bound is `capacity`, which
  compiles larger resampling buffers than an in-memory run of the same data.
  """
  num_clients: int
  capacity: int
  row_shape: tuple
  class_names: tuple
  test: TestData

  def cohort(self, client_ids: np.ndarray) -> ClientData:
    """The clients `client_ids` (int32[P], any order, repeats allowed) on the host:
    x float32[P, N, *row_shape], y int32[P, N], mask bool[P, N], client_id = client_ids.
    Safe to call from a thread other than the one that opened the source."""
    ...

  def attackers(self, client_ids: np.ndarray) -> np.ndarray | None:
    """bool[P]: which of `client_ids` are attackers (--attack=scale), or None (none)."""
    ...


class InMemorySource:
  """A `CohortSource` over an in-memory `FederatedDataset` (load.FederatedDataset)."""

  def __init__(self, data):
    self.data = data
    self.num_clients = int(data.clients.y.shape[0])
    self.capacity = int(data.clients.y.shape[1])
    self.row_shape = tuple(data.clients.x.shape[2:])
    self.class_names = tuple(data.class_names)
    self.test = data.test
    self.max_class_count = int(federated.max_class_count(data.clients, len(self.class_names)))

  def cohort(self, client_ids: np.ndarray) -> ClientData:
    ids = np.asarray(client_ids, np.int32)
    picked = take_clients(self.data.clients, ids)
    return picked._replace(client_id=ids)

  def attackers(self, client_ids: np.ndarray) -> np.ndarray | None:
    if self.data.attackers is None:
      return None
    return np.asarray(self.data.attackers)[np.asarray(client_ids)]



def open_population(path: str) -> CohortSource:
  """The on-disk population at `path` (--population; data/population_store.py)."""
  from fedar_jax.data import population_store
  return population_store.open(path)


def max_class_count(source) -> int:
  """The resamplers' static bound for `source`'s clients: its `max_class_count`, else the
  largest of its `class_counts` [C, K], looking through a wrapping source (`.source`),
  else its capacity."""
  inner = source
  while inner is not None:
    if getattr(inner, 'max_class_count', None):
      return int(inner.max_class_count)
    counts = getattr(inner, 'class_counts', None)
    if counts is not None and np.size(counts):
      return int(np.max(counts))
    inner = getattr(inner, 'source', None)
  return int(source.capacity)
