"""A sweep's data: every distinct data set built once, padded to one shape, stacked.

The data flags of a sweep (sweep_axes, kind 'data') give U distinct data sets,
shared by every group. They are built once, padded to the largest client
capacity N, and stacked: ClientData x[U, C, N, ...] (sharded over the mesh's
SWEEP and CLIENTS axes), TestData x[U, T, ...]. With U = 1 nothing is
stacked: the points share x[C, N, ...].

Padding and random draws. A point's single run (`fedar_jax.main`) pads its
clients to its own N and sizes the oversamplers' synthetic slots from its own
largest class count B. The sweep uses the group's largest B for every point:
every resampler's draws are independent of that bound (a slot's draw depends
only on its index; tests/test_sweep.py checks all of them), so a point still
equals its single run exactly. The client capacity N is not padded past a
point's own for the imbalance partition and synthetic data (N is
--samples_per_client for every ratio, data seed and attacker fraction). Other
partitions (iid, dirichlet, shards, quantity, natural) size N from the drawn
data; where the data sets' N differ, the smaller ones are padded and those
points' resampler draws and epoch shuffles differ from their single runs (same
distribution, not the same numbers).

Memory: the stacked client data takes U x C x N x (4 D + 5) bytes (float32
features, int32 label, bool mask per row); inside the program (U > 1) every
point gets its own copy, S x C x N x (4 D + 5) bytes; and each of the S
points' clients in flight (a client block, or all C) holds a resampled copy
of M rows (the resampler's capacity, up to N + (K - 1) B): S x block x M x
(4 D + 5) bytes. `check_memory` refuses a sweep whose sum exceeds the memory
available (host memory on CPU, free device memory otherwise).
"""
import math
import os
from typing import NamedTuple

import jax
import numpy as np

from fedar_jax import client_block_fit
from fedar_jax import data_dtype
from fedar_jax import distributed
from fedar_jax import resample
from fedar_jax import fedar_round
from fedar_jax import sharding
from fedar_jax import sweep_axes
from fedar_jax import train
from fedar_jax.config import ConfigError, RunConfig
from fedar_jax.data import cohort_source
from fedar_jax.data import federated
from fedar_jax.data import synthetic
from fedar_jax.data.load import FederatedDataset

GIB = 2.0 ** 30


class SweepData(NamedTuple):
  """The sweep's data sets, built once for every group.

  sets: U FederatedDatasets (this process's client rows, all padded to one
  capacity N; views into the stacked arrays). max_class_count: B, the largest
  class count of any client of any set (the resamplers' static bound).
  clients, test: on the mesh: ClientData [U, C, N, ...] / TestData [U, T, ...]
  for U > 1, else ClientData [C, N, ...] / TestData [T, ...]. rows: the client
  layout every point's round uses (`train.build_layout`, its block chosen once).
  source: a streamed sweep's CohortSource (`build_streamed`: clients are then the
  cohort's shapes, read round by round), else None.
  """
  sets: tuple[FederatedDataset, ...]
  max_class_count: int
  clients: federated.ClientData
  test: federated.TestData
  rows: train.ClientRows
  source: object = None


def data_configs(base: RunConfig, axes: sweep_axes.SweepAxes) -> list[RunConfig]:
  """One config per distinct data set, in the points' data-major order."""
  return [base.replace(**d) for d in sweep_axes.data_settings(axes)]


def row_bytes(feature_shape) -> int:
  """Bytes of one client row: float32 features, int32 label, bool mask."""
  return 4 * math.prod(feature_shape) + 5


def estimate_bytes(axes: sweep_axes.SweepAxes, rows: int, capacity: int,
                   feature_shape, num_classes: int, max_class_count: int,
                   block: int) -> int:
  """Stacked client data plus the resampled copies of the clients in flight (module doc)."""
  per_row = row_bytes(feature_shape)
  u, points = axes.data_sets, axes.points_per_group
  stacked = (u + (points if u > 1 else 0)) * rows * capacity * per_row
  resampled = max(
      resample.make_resampler(name, num_classes=num_classes, capacity=capacity,
                              max_class_count=max_class_count).capacity
      for name in sweep_axes.resamplers(axes))
  return stacked + points * block * resampled * per_row


def available_bytes() -> int:
  """Memory free for the sweep on this process's devices (host memory on CPU)."""
  devices = jax.local_devices()
  if devices[0].platform == 'cpu':
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  total = 0
  for d in devices:
    stats = d.memory_stats() or {}
    if 'bytes_limit' not in stats:
      return 1 << 62  # Unknown: do not refuse.
    total += stats['bytes_limit'] - stats.get('bytes_in_use', 0)
  return total


def check_memory(axes: sweep_axes.SweepAxes, need: int, available: int | None = None) -> None:
  """Raises ConfigError naming the lists that multiply memory when `need` bytes exceed
  `available` (default `available_bytes()`, per process)."""
  lists = axes.varying(sweep_axes.DATA) or axes.varying(sweep_axes.TRACED)
  if not lists:
    return
  available = available_bytes() if available is None else available
  need = need / jax.process_count()
  if need > available:
    raise ConfigError('/--'.join(lists), f'stacked client data needs {need / GIB:.1f} GiB, '
                      f'{available / GIB:.1f} GiB available; use --client_block or shorter '
                      f'lists')


def _expected_shape(cfg: RunConfig):
  """(N, feature shape) known from the flags alone (synthetic data), else None."""
  if cfg.dataset != 'synthetic':
    return None
  return cfg.samples_per_client, (cfg.feature_dim,)


def _synthetic_max_class_count(cfgs) -> int:
  return max(synthetic.max_class_count(c.samples_per_client, c.num_classes,
                                       c.imbalance_ratio, synthetic.skew_of(c)) for c in cfgs)


def _pad_capacity(clients: federated.ClientData, capacity: int) -> federated.ClientData:
  extra = capacity - clients.x.shape[1]
  if not extra:
    return clients
  pad = lambda a: np.pad(a, [(0, 0), (0, extra)] + [(0, 0)] * (a.ndim - 2))
  return clients._replace(x=pad(clients.x), y=pad(clients.y), mask=pad(clients.mask))


def _pad_test(test: federated.TestData, rows: int) -> federated.TestData:
  extra = rows - test.x.shape[0]
  if not extra:
    return test
  pad = lambda a: np.pad(a, [(0, extra)] + [(0, 0)] * (a.ndim - 1))
  return federated.TestData(*(pad(np.asarray(a)) for a in test))


def build(base: RunConfig, axes: sweep_axes.SweepAxes, mesh,
            available: int | None = None) -> SweepData:
  """Builds, checks, pads, stacks and places the sweep's U data sets.

  Raises:
    DataError / ConfigError: data that does not fit the flags, or (ConfigError
      naming the sweep lists) a sweep whose data would not fit in memory
      (`check_memory`); raised before anything is written.
  """
  cfgs = data_configs(base, axes)
  client_rows = train.build_layout(base, mesh, client_block_fit.choose(base, mesh))
  layout, rows = client_rows.layout, client_rows.rows
  _, block = fedar_round.slot_layout(layout, base.num_clients)
  expected = _expected_shape(base)
  if expected is not None:  # Refuse before generating anything.
    n, feat = expected
    check_memory(axes, estimate_bytes(axes, rows, n, feat, base.num_classes,
                                      _synthetic_max_class_count(cfgs), block), available)
  sets = []
  for u, cfg in enumerate(cfgs):
    data = train.load_data(cfg, mesh, client_rows)
    if u == 0 and expected is None:
      c = data.clients
      k = len(data.class_names)
      check_memory(axes, estimate_bytes(axes, rows, c.x.shape[1], c.x.shape[2:], k,
                                        federated.max_class_count(c, k), block), available)
    if data.class_names != (sets[0].class_names if sets else data.class_names):
      raise ValueError(f'data set {u} has classes {data.class_names}')
    sets.append(data)
  k = len(sets[0].class_names)
  max_count = max(distributed.global_max(federated.max_class_count(d.clients, k))
                  for d in sets)
  capacity = max(d.clients.x.shape[1] for d in sets)
  test_rows = max(d.test.x.shape[0] for d in sets)
  sets = [d._replace(clients=_pad_capacity(d.clients, capacity),
                     test=_pad_test(d.test, test_rows)) for d in sets]
  if len(sets) == 1:
    clients = sharding.shard_clients(
        data_dtype.stored_clients(sets[0].clients, base.data_dtype), mesh, rows)
    test = sharding.replicate(sets[0].test, mesh)
    return SweepData(tuple(sets), max_count, clients, test, client_rows)
  stacked_clients = federated.ClientData(*(np.stack(a) for a in zip(*(d.clients for d in sets))))
  stacked_test = federated.TestData(*(np.stack(a) for a in zip(*(d.test for d in sets))))
  # The sets become views into the stacked arrays (one host copy).
  sets = tuple(d._replace(clients=federated.ClientData(*(a[u] for a in stacked_clients)),
                          test=federated.TestData(*(a[u] for a in stacked_test)))
               for u, d in enumerate(sets))
  clients = sharding.shard_stacked_clients(
      data_dtype.stored_clients(stacked_clients, base.data_dtype), mesh, rows)
  test = sharding.shard_leading(stacked_test, mesh)
  return SweepData(sets, max_count, clients, test, client_rows)


def build_streamed(base: RunConfig, source, mesh) -> SweepData:
  """A sweep whose cohorts stream from `source` (a CohortSource, one data set): every
  point's round is the cohort's (`train.build_streamed`); `clients` holds the cohort's
  shapes on `mesh` (cohort_stream.cohort_shapes)."""
  from fedar_jax import cohort_stream
  first = train.build_streamed(base, source, mesh)
  layout = first.spec
  slots = fedar_round.data_rows(layout, layout.num_clients)
  start, stop = distributed.local_rows(sharding.leading(mesh), slots)
  rows = train.ClientRows(fedar_round.ClientLayout(layout.num_clients, 0, layout.client_block,
                                                   mesh), slots, start, stop)
  return SweepData((first.data,), cohort_source.max_class_count(source),
                   cohort_stream.cohort_shapes(source, slots, mesh, base.data_dtype),
                   sharding.replicate(first.data.test, mesh), rows, source)
