"""Dataset dispatch: a RunConfig in, padded federated arrays out.

Real sources load a Pool; then: class selection/relabelling (--classes), a
balanced test split carved out first (--test_per_class), the partition of the
remaining rows over clients (--partition), optional attacker clients, padding.
"""
import time
from typing import NamedTuple

from absl import logging
import numpy as np

from fedar_jax import config as config_lib
from fedar_jax.data import federated
from fedar_jax.data import fer2013
from fedar_jax.data import image_folder
from fedar_jax.data import latent_csv
from fedar_jax.data import partition
from fedar_jax.data import synthetic
from fedar_jax.data import tfds_source
from fedar_jax.data.errors import DataError
from fedar_jax.data.labels import select_classes
from fedar_jax.data.pool import Pool
from fedar_jax.methods import registry


class FederatedDataset(NamedTuple):
  """clients: ClientData x[C, N, ...]; test: balanced TestData; class_names: K strings;
  attackers: bool[C] clients whose data was made extreme on purpose (or None)."""
  clients: federated.ClientData
  test: federated.TestData
  class_names: tuple[str, ...]
  attackers: np.ndarray | None = None


def one_row_dataset(row_shape: tuple, num_classes: int) -> FederatedDataset:
  """One client of one zero row x[1, 1, *row_shape] and K class names: what a model builder
  reads (row shape, class count) when only the data's shapes are known."""
  x = np.zeros((1, 1) + tuple(row_shape), np.float32)
  clients = federated.ClientData(x, np.zeros((1, 1), np.int32), np.ones((1, 1), bool),
                                 np.zeros(1, np.int32))
  test = federated.TestData(x[0], np.zeros(1, np.int32), np.ones(1, bool))
  return FederatedDataset(clients, test, tuple(str(k) for k in range(num_classes)))


# The registered real-data sources (methods/builtin.py): cfg -> (Pool, label ids).
def load_latent_csv(cfg) -> tuple[Pool, tuple[int, ...]]:
  return latent_csv.load(cfg.data_path, cfg.label_column, cfg.client_column)


def load_fer2013(cfg) -> tuple[Pool, tuple[int, ...]]:
  return fer2013.load(cfg.data_path, cfg.image_size, cfg.color, tuple(cfg.fer2013_usage))


def load_image_folder(cfg) -> tuple[Pool, tuple[int, ...]]:
  return image_folder.load(cfg.data_dir, cfg.image_size, cfg.color)


def load_tfds(cfg) -> tuple[Pool, tuple[int, ...]]:
  return tfds_source.load(cfg.dataset[5:], cfg.data_dir, cfg.tfds_split, cfg.image_size,
                          cfg.color)


def load_pool(cfg) -> tuple[Pool, tuple[int, ...]]:
  """The source's rows and its label value of each class (before --classes)."""
  if cfg.client_column and cfg.dataset != 'latent_csv':
    raise DataError('--client_column', f'is only read by --dataset=latent_csv, not {cfg.dataset}')
  return registry.resolve('dataset', registry.dataset_source(cfg.dataset))(cfg)


def load_labels(cfg) -> tuple[Pool, tuple[int, ...], tuple[int, ...]]:
  """(the source's Pool with zero-width rows x float32[T, 0], label ids, the row shape its
  loader gives): for image sources, only what the partition needs is read (FER2013's
  label column, an image folder's file names); other sources are loaded whole."""
  side, ch = cfg.image_size, 1 if cfg.color == 'grayscale' else 3
  if cfg.dataset == 'fer2013':
    return (*fer2013.load_labels(cfg.data_path, tuple(cfg.fer2013_usage)), (side, side, ch))
  if cfg.dataset == 'image_folder':
    return (*image_folder.load_labels(cfg.data_dir), (side, side, ch))
  pool, ids = load_pool(cfg)
  return pool._replace(x=np.zeros((len(pool.y), 0), np.float32)), ids, pool.x.shape[1:]


def federate_pool(cfg, pool: Pool, label_ids) -> FederatedDataset:
  """--classes selection, then `federate`: a source's Pool as the run's clients and test set."""
  pool = select_classes(pool, label_ids, tuple(cfg.classes))
  if len(pool.class_names) < 2:
    raise DataError(cfg.data_path or cfg.data_dir or cfg.dataset,
                    f'found {len(pool.class_names)} class(es); need at least 2')
  return federate(cfg, pool)


def partition_rows(cfg, rng: np.random.Generator, y: np.ndarray, groups, class_names):
  """Index arrays (into y) of every client's rows for cfg.partition."""
  c, k = cfg.num_clients, len(class_names)
  budget = cfg.num_clients * cfg.samples_per_client
  if cfg.partition == 'natural':
    if groups is None:
      raise DataError('--partition', 'natural needs --client_column (a subject/device id column)')
    parts = partition.natural(groups, c)
    logging.warning('--partition=natural: %d clients, one per --client_column id (%d distinct '
                    'ids in the training rows)', c, len(np.unique(groups)))
    if cfg.samples_per_client:
      parts = [np.sort(rng.permutation(p)[:cfg.samples_per_client]) for p in parts]
    return parts
  if cfg.partition == 'imbalance':
    ratios = partition.client_ratios(rng, c, cfg.imbalance_ratio, cfg.imbalance_ratio_max)
    return partition.imbalance(rng, y, k, c, cfg.samples_per_client, ratios, class_names,
                               cfg.imbalance_order)
  # The other partitions share out a random subset of C * samples_per_client rows (0: all).
  rows = np.arange(len(y))
  if cfg.samples_per_client and budget < len(y):
    rows = np.sort(rng.choice(len(y), budget, replace=False))
  if len(rows) < c:
    raise DataError('--num_clients', f'{len(rows)} training samples cannot fill {c} clients')
  if cfg.partition == 'iid':
    parts = partition.iid(rng, len(rows), c)
  elif cfg.partition == 'dirichlet':
    parts = partition.dirichlet(rng, y[rows], k, c, cfg.dirichlet_alpha)
  elif cfg.partition == 'shards':
    parts = partition.shards(rng, y[rows], k, c, cfg.shards_per_client)
  elif cfg.partition == 'quantity':
    parts = partition.quantity(rng, len(rows), c, cfg.quantity_exponent)
  else:
    raise ValueError(f'unknown partition {cfg.partition!r}')
  return [rows[p] for p in parts]


def federate(cfg, pool: Pool) -> FederatedDataset:
  """Test split, partition, attackers and padding of a (class-selected) pool."""
  k = len(pool.class_names)
  rng = np.random.default_rng([cfg.seed, 0xDA7A])
  test_idx, train_idx = partition.carve_test(rng, pool.y, k, cfg.test_per_class,
                                             pool.class_names)
  y = pool.y[train_idx]
  if len(y) < cfg.num_clients:
    raise DataError('--num_clients', f'{len(y)} training samples (after the test split) '
                    f'cannot fill {cfg.num_clients} clients')
  groups = None if pool.groups is None else pool.groups[train_idx]
  parts = partition_rows(cfg, rng, y, groups, pool.class_names)
  attackers = partition.choose_attackers(rng, cfg.num_clients, cfg.attacker_fraction)
  target = _attack_target(cfg, k)
  xs, ys = [], []
  for c, rows in enumerate(parts):
    if attackers[c] and cfg.attack in ('skew', 'scale'):
      rows = partition.skew_attack(rows, y, cfg.attack_ratio, target)
    labels = y[rows]
    if attackers[c] and cfg.attack == 'label_flip':
      labels = partition.label_flip(labels, k)
    xs.append(pool.x[train_idx[rows]])
    ys.append(labels.astype(np.int32))
  empty = [c for c, v in enumerate(ys) if len(v) == 0]
  if empty:
    raise DataError('--num_clients', f'client {empty[0]} got no rows from '
                    f'--partition={cfg.partition}')
  test = federated.TestData(pool.x[test_idx], pool.y[test_idx], np.ones(len(test_idx), bool))
  # The imbalance partition's capacity is fixed by the flags (attackers may only shrink a
  # client), so data sets that differ in ratio, seed or attackers share one shape.
  capacity = cfg.samples_per_client if cfg.partition == 'imbalance' else None
  return FederatedDataset(federated.stack_clients(xs, ys, capacity), test, pool.class_names,
                          attackers)


def _attack_target(cfg, num_classes: int) -> int:
  if cfg.attack_target >= num_classes:
    raise DataError('--attack_target', f'{cfg.attack_target} is not a class of the '
                    f'{num_classes} classes')
  return partition.attack_target(cfg.seed, num_classes, cfg.attack_target)


def load_federated(cfg, client_ids=None) -> FederatedDataset:
  """Builds the clients and the test set that `cfg.dataset` names.

  client_ids: the clients to load (default all); a host of a multi-host run
  loads only its own (synthetic client c depends only on (seed, c); a real
  data set is read and partitioned whole, then sliced). Logs a line before and
  after loading.

  Raises:
    DataError: bad input file/folder or data that cannot satisfy the flags.
  """
  if config_lib.is_virtual(cfg):
    raise DataError('--num_clients', f'{cfg.num_clients} synthetic clients form a virtual '
                    'population, generated cohort by cohort (data/virtual_population.py), '
                    'not loaded whole')
  source = cfg.data_path or cfg.data_dir or cfg.dataset
  logging.info('loading data: %s, %d clients ...', source, cfg.num_clients)
  start = time.perf_counter()
  data = _load(cfg, client_ids)
  logging.info('loaded data in %.1fs: %d clients here x %d rows x %s', time.perf_counter() - start,
               *data.clients.x.shape[:2], data.clients.x.shape[2:])
  return data


def _load(cfg, client_ids) -> FederatedDataset:
  if cfg.dataset == 'synthetic':
    clients, test = synthetic.synthetic_federated(
        cfg.seed, cfg.num_clients, cfg.samples_per_client, cfg.num_classes, cfg.feature_dim,
        cfg.imbalance_ratio, cfg.test_per_class, client_ids, synthetic.skew_of(cfg))
    names = tuple(str(k) for k in range(cfg.num_classes))
    if not cfg.attacker_fraction:
      return FederatedDataset(clients, test, names)
    # Attackers from their own stream of the data seed (the clients do not change).
    attackers = partition.choose_attackers(np.random.default_rng([cfg.seed, 0xA7]),
                                           cfg.num_clients, cfg.attacker_fraction)
    attackers = attackers[np.asarray(clients.client_id)]
    clients = partition.attack_padded_clients(clients, attackers, cfg.attack, cfg.attack_ratio,
                                              _attack_target(cfg, cfg.num_classes),
                                              cfg.num_classes)
    return FederatedDataset(clients, test, names, attackers)
  data = federate_pool(cfg, *load_pool(cfg))
  if client_ids is None:
    return data
  ids = np.asarray(list(client_ids), np.int32)
  clients = federated.take_clients(data.clients, ids)
  attackers = None if data.attackers is None else data.attackers[ids]
  return data._replace(clients=clients, attackers=attackers)
