"""Padded federated arrays: every client is a slice of x[C, N, ...], y[C, N], mask[C, N]."""
from typing import NamedTuple, Sequence

import numpy as np


class ClientData(NamedTuple):
  """All clients' data, padded to a common capacity N.

  x: float32[C, N, ...] features; y: int32[C, N] labels; mask: bool[C, N] real
  rows; client_id: int32[C] global client index (used to fold PRNG keys, so a
  client's randomness does not depend on batching or sharding).
  """
  x: np.ndarray
  y: np.ndarray
  mask: np.ndarray
  client_id: np.ndarray


class TestData(NamedTuple):
  """A held-out test set: x float32[T, ...], y int32[T], mask bool[T]."""
  x: np.ndarray
  y: np.ndarray
  mask: np.ndarray


def stack_clients(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray],
                  capacity: int | None = None) -> ClientData:
  """Stacks per-client arrays (unequal sizes allowed) into padded ClientData.

  Args:
    xs: C arrays float[n_c, ...]; ys: C arrays int[n_c].
    capacity: N; defaults to the largest n_c.
  """
  if len(xs) != len(ys) or not xs:
    raise ValueError('need the same, non-zero number of feature and label arrays')
  sizes = [len(v) for v in ys]
  n = max(sizes) if capacity is None else capacity
  if max(sizes) > n:
    raise ValueError(f'a client holds {max(sizes)} rows, more than capacity {n}')
  feat = np.asarray(xs[0]).shape[1:]
  x = np.zeros((len(xs), n) + feat, np.float32)
  y = np.zeros((len(xs), n), np.int32)
  mask = np.zeros((len(xs), n), bool)
  for c, (xc, yc) in enumerate(zip(xs, ys)):
    x[c, :len(yc)] = xc
    y[c, :len(yc)] = yc
    mask[c, :len(yc)] = True
  return ClientData(x, y, mask, np.arange(len(xs), dtype=np.int32))


def append_empty_clients(clients: ClientData, num_rows: int, first_id: int) -> ClientData:
  """Appends empty clients (mask all False, so FedAvg weight 0) up to `num_rows` on the
  client axis (the rows a round's layout needs: `fedar_round.data_rows`).

  The padding clients get ids first_id, first_id + 1, ... (pass the number of
  real clients before them, so no id is a real client's).
  """
  c = clients.x.shape[0]
  extra = num_rows - c
  if extra < 0:
    raise ValueError(f'cannot pad {c} clients down to {num_rows}')
  if not extra:
    return clients
  pad = lambda a: np.concatenate([np.asarray(a), np.zeros((extra,) + a.shape[1:], a.dtype)])
  return ClientData(pad(clients.x), pad(clients.y), pad(clients.mask),
                    np.concatenate([np.asarray(clients.client_id),
                                    np.arange(first_id, first_id + extra, dtype=np.int32)]))


def take_clients(clients: ClientData, index) -> ClientData:
  """The clients at `index` (int indices or a bool mask over the client axis)."""
  return ClientData(*(np.asarray(a)[index] for a in clients))


def client_class_counts(data: ClientData, num_classes: int) -> np.ndarray:
  """int[C, K]: each client's count of real rows per class."""
  return np.stack([np.bincount(data.y[c][data.mask[c]], minlength=num_classes)
                   for c in range(data.y.shape[0])])


def max_class_count(data: ClientData, num_classes: int) -> int:
  """Largest per-class count of real rows over all clients (a static resampling bound)."""
  counts = client_class_counts(data, num_classes)
  return int(counts.max()) if counts.size else 0
