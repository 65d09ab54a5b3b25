"""Partitions of a labelled pool into clients, attacker clients, and the held-out test split.

Every partitioner takes a NumPy Generator and the pool's labels and returns C
index arrays into the pool (disjoint; no row is shared by two clients).
"""
from typing import Sequence

import numpy as np

from fedar_jax.data import synthetic
from fedar_jax.data.errors import DataError

IMBALANCE_ORDERS = ('random', 'fixed')
PARTITIONS = ('iid', 'dirichlet', 'imbalance', 'shards', 'quantity', 'natural')
ATTACKS = ('skew', 'label_flip', 'scale')


def carve_test(rng: np.random.Generator, y: np.ndarray, num_classes: int,
               per_class: int, class_names: Sequence[str]):
  """A balanced test split: `per_class` random rows of every class, taken first.

  Returns:
    (test_idx int[K * per_class], train_idx int[T - K * per_class]), both sorted.
  Raises:
    DataError naming --test_per_class when a class has no row left for training.
  """
  test = []
  for k in range(num_classes):
    rows = np.flatnonzero(y == k)
    if len(rows) <= per_class:
      raise DataError('--test_per_class', f'class {class_names[k]!r} has {len(rows)} rows; '
                      f'{per_class} for the test set would leave none for the clients')
    test.append(rng.choice(rows, per_class, replace=False))
  test = np.sort(np.concatenate(test))
  return test, np.setdiff1d(np.arange(len(y)), test)


def iid(rng: np.random.Generator, n: int, num_clients: int) -> list[np.ndarray]:
  """Rows 0..n-1 shuffled and split into C near-equal parts."""
  return [np.sort(p) for p in np.array_split(rng.permutation(n), num_clients)]


def dirichlet(rng: np.random.Generator, y: np.ndarray, num_classes: int, num_clients: int,
              alpha: float, max_tries: int = 100) -> list[np.ndarray]:
  """Label skew: each class's rows split over clients with proportions ~ Dir(alpha).

  Redrawn (up to `max_tries` times) until every client holds at least one row.
  """
  for _ in range(max_tries):
    parts = [[] for _ in range(num_clients)]
    for k in range(num_classes):
      rows = rng.permutation(np.flatnonzero(y == k))
      share = rng.dirichlet(np.full(num_clients, alpha))
      cuts = (np.cumsum(share)[:-1] * len(rows)).astype(int)
      for c, piece in enumerate(np.split(rows, cuts)):
        parts[c].append(piece)
    parts = [np.sort(np.concatenate(p)) for p in parts]
    if min(len(p) for p in parts) > 0:
      return parts
  raise DataError('--dirichlet_alpha', f'{alpha:g} left a client empty in {max_tries} draws '
                  f'of {len(y)} rows over {num_clients} clients; raise it or use fewer clients')


def client_ratios(rng: np.random.Generator, num_clients: int, ratio: float,
                  ratio_max: float) -> np.ndarray:
  """float[C]: `ratio` for all, or log-uniform in [ratio, ratio_max] per client."""
  if ratio_max <= ratio:
    return np.full(num_clients, float(ratio))
  return np.exp(rng.uniform(np.log(ratio), np.log(ratio_max), num_clients))


def imbalance(rng: np.random.Generator, y: np.ndarray, num_classes: int, num_clients: int,
              samples_per_client: int, ratios: np.ndarray,
              class_names: Sequence[str], order: str = 'random') -> list[np.ndarray]:
  """Every client gets `samples_per_client` rows at its imbalance ratio.

  Class sizes are geometric from the majority down to majority / ratio (as the
  synthetic generator). order='random': which class is the majority, the
  minority and in between is a random permutation per client; 'fixed': class
  0 is every client's majority and class K-1 its minority (globally
  imbalanced, as the synthetic data). Rows are drawn without replacement.
  """
  stock = [list(rng.permutation(np.flatnonzero(y == k))) for k in range(num_classes)]
  parts = []
  for c in range(num_clients):
    counts = synthetic.imbalanced_counts(samples_per_client, num_classes, ratios[c])
    ranked = rng.permutation(num_classes) if order == 'random' else np.arange(num_classes)
    rows = []
    for rank, k in enumerate(ranked):
      need = counts[rank]
      if len(stock[k]) < need:
        raise DataError('--samples_per_client', f'the pool ran out of class '
                        f'{class_names[k]!r} at client {c} ({sum(y == k)} training rows); '
                        f'use fewer clients or fewer samples per client')
      rows.extend(stock[k][:need])
      del stock[k][:need]
    parts.append(np.sort(np.array(rows, np.int64)))
  return parts


def shards(rng: np.random.Generator, y: np.ndarray, num_classes: int, num_clients: int,
           classes_per_client: int) -> list[np.ndarray]:
  """Pathological skew: client c holds exactly min(k, K) classes.

  Client c takes classes perm[(c * k + j) mod K] for j < k, so every class is
  held when C * k >= K; each class's rows are split evenly over its holders.
  """
  k = min(classes_per_client, num_classes)
  perm = rng.permutation(num_classes)
  held = [[perm[(c * k + j) % num_classes] for j in range(k)] for c in range(num_clients)]
  parts = [[] for _ in range(num_clients)]
  for cls in range(num_classes):
    holders = [c for c in range(num_clients) if cls in held[c]]
    if not holders:
      continue
    rows = rng.permutation(np.flatnonzero(y == cls))
    if len(rows) < len(holders):
      raise DataError('--shards_per_client', f'class has {len(rows)} rows for '
                      f'{len(holders)} clients')
    for c, piece in zip(holders, np.array_split(rows, len(holders))):
      parts[c].append(piece)
  return [np.sort(np.concatenate(p)) for p in parts]


def quantity(rng: np.random.Generator, n: int, num_clients: int,
             exponent: float) -> list[np.ndarray]:
  """Quantity skew: client sizes proportional to 1 + Pareto(exponent) draws (a power law),
  at least one row each; labels i.i.d. within a client."""
  w = 1.0 + rng.pareto(exponent, num_clients)
  sizes = np.maximum(np.floor(w / w.sum() * n).astype(int), 1)
  while sizes.sum() > n:
    sizes[np.argmax(sizes)] -= 1
  sizes[np.argmax(sizes)] += n - sizes.sum()
  return [np.sort(p) for p in np.split(rng.permutation(n), np.cumsum(sizes)[:-1])]


def natural(groups: np.ndarray, num_clients: int) -> list[np.ndarray]:
  """One client per distinct group id (e.g. a subject), the first C ids in sorted order."""
  ids = np.unique(groups)
  if len(ids) < num_clients:
    raise DataError('--num_clients', f'{num_clients} clients but the training rows (after '
                    f'--classes and the test split) hold only {len(ids)} distinct '
                    '--client_column ids; give a smaller --num_clients')
  return [np.flatnonzero(groups == g) for g in ids[:num_clients]]


def choose_attackers(rng: np.random.Generator, num_clients: int, fraction: float) -> np.ndarray:
  """bool[C]: round(fraction * C) clients chosen at random."""
  flags = np.zeros(num_clients, bool)
  flags[rng.choice(num_clients, int(round(fraction * num_clients)), replace=False)] = True
  return flags


def attack_target(seed: int, num_classes: int, target: int = -1) -> int:
  """The class every skew/scale attacker inflates: `target`, or (-1) one class drawn from
  the data seed (its own stream, so the rest of the data does not change)."""
  if target >= 0:
    return target
  return int(np.random.default_rng([seed, 0xA77AC4]).integers(num_classes))


def skew_attack(rows: np.ndarray, y: np.ndarray, ratio: float,
                target: int | None = None) -> np.ndarray:
  """An attacker keeps all rows of class `target` (None: its own majority class) and
  count(target)/ratio rows of every other class (ratio 0: the target class only; at
  least one row of each class it holds), so its IR towards the target is >= ratio."""
  labels = y[rows]
  counts = np.bincount(labels)
  major = int(np.argmax(counts)) if target is None else target
  counts = np.bincount(labels, minlength=major + 1)
  keep = labels == major
  if ratio > 0:
    quota = int(counts[major] // ratio)
    for k in np.flatnonzero(counts):
      if k != major:
        keep[np.flatnonzero(labels == k)[:max(quota, 1)]] = True
  return rows[keep]


def label_flip(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Every label moved to the next class: y -> (y + 1) mod K."""
  return ((labels + 1) % num_classes).astype(np.int32)


def attack_padded_clients(clients, attackers: np.ndarray, attack: str, ratio: float,
                          target: int, num_classes: int):
  """Padded ClientData with the attackers' data changed as `federate` changes real data:
  skew/scale keep the rows `skew_attack` keeps (moved to the front, the rest masked out);
  label_flip moves every real label to the next class. attackers: bool[C] for these rows."""
  x, y, mask = (np.array(a) for a in (clients.x, clients.y, clients.mask))
  for c in np.flatnonzero(attackers):
    real = np.flatnonzero(mask[c])
    if attack == 'label_flip':
      y[c, real] = label_flip(y[c, real], num_classes)
      continue
    keep = skew_attack(real, y[c], ratio, target)
    x[c, :len(keep)], y[c, :len(keep)] = x[c, keep], y[c, keep]
    mask[c] = np.arange(mask.shape[1]) < len(keep)
  return clients._replace(x=x, y=y, mask=mask)
