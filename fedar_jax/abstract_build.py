"""A run's or a sweep group's program inputs from shapes alone: nothing per client is built.

`program_inputs` gives what `programs.compile_program` lowers: the round spec and
`jax.ShapeDtypeStruct`s, with the shardings the real run places its arrays
with, of the server state, the client data, the test set and the traced
hyperparameters. Only the model's parameters are real (initialised from one
row of zeros: their shapes are the model's) and the server state built from
them.

The data's shapes (`data_shape`): synthetic data's come from the flags,
exactly, including the resamplers' static bound on a client's largest class
count (`synthetic.imbalanced_counts`); data read from files has its labels
read and partitioned on the host as the run would (FER2013's label column and
an image folder's file names only, no pixel read; encoded-feature files and
TFDS data sets through their loaders), its shapes taken from the result:
exact as well. A streamed run (--population, or a virtual population) plans its
cohort's round: the shapes of a population directory come from its metadata and index
(`population_store.cohort_shape`, no shard read), the layout is the cohort's
(`cohort_stream.cohort_layout`: an in-memory population of the cohort's size), and with
--eval_clients its evaluated clients' rows, scored by a program of their own.
"""
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from fedar_jax import cohort_stream
from fedar_jax import config as config_lib
from fedar_jax import data_dtype
from fedar_jax import fedar_round
from fedar_jax import sampling
from fedar_jax import sharding
from fedar_jax import train
from fedar_jax.config import ConfigError, RunConfig
from fedar_jax.data import federated
from fedar_jax.data import load
from fedar_jax.data import synthetic


class DataShape(NamedTuple):
  """The shapes of a data set: capacity N rows per client, row shape, K classes, T test
  rows, the largest class count of any client (B, the resamplers' static bound) and
  whether B is exact (else an upper bound)."""
  capacity: int
  row_shape: tuple
  num_classes: int
  test_rows: int
  max_class_count: int
  exact: bool


def data_shape(cfgs: list[RunConfig]) -> DataShape:
  """The shape of the data sets of `cfgs` (one per data set of a sweep; a sweep pads
  them to the largest capacity and test set, as `sweep_data.build` does).

  Raises DataError for data files that cannot be read or do not fit the flags.
  """
  cfg = cfgs[0]
  if cfg.population:
    from fedar_jax.data import population_store  # NumPy only.
    return DataShape(**population_store.cohort_shape(cfg.population), exact=True)
  if cfg.dataset != 'synthetic':
    return _read_shape(cfgs)
  # Attackers keep or shrink their majority class, so B is every honest client's.
  counts = max(synthetic.max_class_count(c.samples_per_client, c.num_classes,
                                         c.imbalance_ratio, synthetic.skew_of(c)) for c in cfgs)
  return DataShape(cfg.samples_per_client, (cfg.feature_dim,), cfg.num_classes,
                   cfg.num_classes * cfg.test_per_class, counts, True)


def _read_shape(cfgs: list[RunConfig]) -> DataShape:
  """Data read from files: each data set's labels partitioned on the host as the run would
  (`load.load_labels`: image pixels are not read), the rows zero-width."""
  capacity = test_rows = max_count = 0
  row_shape, names = None, None
  for cfg in cfgs:
    pool, label_ids, row_shape = load.load_labels(cfg)
    data = load.federate_pool(cfg.replace(seed=cfg.effective_data_seed), pool, label_ids)
    k = len(data.class_names)
    if names is not None and data.class_names != names:
      raise ConfigError('dataset', f'the data sets of the sweep have different classes: {names} '
                        f'and {data.class_names}')
    names = data.class_names
    capacity = max(capacity, data.clients.x.shape[1])
    test_rows = max(test_rows, data.test.x.shape[0])
    max_count = max(max_count, federated.max_class_count(data.clients, k))
  return DataShape(capacity, tuple(row_shape), len(names), test_rows, max_count, True)


class ProgramInputs(NamedTuple):
  """spec: the round's RoundSpec. state, hparams: ServerState / HParams of
  ShapeDtypeStructs (leading [S] for a sweep). clients: ClientData [rows, N, ...]
  ([U, rows, N, ...] for U > 1 stacked data sets). test: TestData [T, ...] ([U, T, ...]).
  evaluated: a streamed run's evaluated clients (--eval_clients E > 0), ClientData
  [E, N, ...] replicated, as `cohort_stream.gather` reads them; else None (an in-memory
  round evaluates its clients itself)."""
  spec: fedar_round.RoundSpec
  state: fedar_round.ServerState
  clients: federated.ClientData
  test: federated.TestData
  hparams: fedar_round.HParams
  evaluated: federated.ClientData | None = None


def streamed(cfg: RunConfig) -> bool:
  """Whether the run streams its cohorts (--population, or a virtual population): its
  round holds only the cohort, one round per call (cohort_stream.py)."""
  return bool(cfg.population) or config_lib.is_virtual(cfg)


def layout(cfg: RunConfig, mesh, client_block: int) -> tuple[fedar_round.ClientLayout, int]:
  """The round's client layout on `mesh` with `client_block`, and its client rows (a
  streamed run's: its cohort's)."""
  per_round = sampling.clients_per_round(cfg.num_clients, cfg.clients_per_round,
                                         cfg.client_fraction)
  if streamed(cfg):
    cohort = cohort_stream.cohort_layout(per_round, client_block, mesh)
    return cohort, fedar_round.data_rows(cohort, per_round)
  layout = fedar_round.ClientLayout(cfg.num_clients,
                                    per_round if per_round < cfg.num_clients else 0,
                                    client_block, mesh)
  return layout, fedar_round.data_rows(layout, cfg.num_clients)


def _abstract(tree, placed, lead: tuple = ()):
  """ShapeDtypeStructs of `tree`'s leaves, with a leading `lead` and sharding `placed`."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(lead + np.shape(a), a.dtype,
                                                     sharding=placed), tree)


def program_inputs(points: tuple[RunConfig, ...], num_data: int, shape: DataShape, mesh,
                   client_block: int, sweep: bool) -> ProgramInputs:
  """The inputs of one program: a single run (`sweep` False, one point) or a sweep group
  of S points over `num_data` (U) stacked data sets, on `mesh`."""
  cfg = points[0]
  round_layout, rows = layout(cfg, mesh, client_block)
  resampler = train.resampler_for(cfg, shape.num_classes, shape.capacity,
                                  shape.max_class_count)
  model = train.model_builder(cfg.model)(
      cfg, load.one_row_dataset(shape.row_shape, shape.num_classes), resampler)
  spec, state, hparams = train.round_parts(
      cfg, model, resampler, shape.num_classes, round_layout,
      np.zeros(rows, bool) if cfg.attack == 'scale' else None)
  evaluated = None
  if streamed(cfg):  # The evaluated clients are scored by a program of their own.
    spec = spec._replace(eval_clients=0)
    if cfg.eval_clients:
      evaluated = evaluated_clients(cfg.eval_clients, shape, cfg.data_dtype, mesh)
  if sweep:
    lead, placed = (len(points),), sharding.leading(mesh, sharding.SWEEP)
  else:
    lead, placed = (), sharding.replicated(mesh)
  state, hparams = _abstract(state, placed, lead), _abstract(hparams, placed, lead)
  n, row = shape.capacity, shape.row_shape
  stacked = sweep and num_data > 1
  data_lead = (num_data,) if stacked else ()
  client_sharding = NamedSharding(mesh, P(sharding.SWEEP, sharding.CLIENTS) if stacked
                                  else P(sharding.CLIENTS))
  sds = lambda s, dtype, where: jax.ShapeDtypeStruct(data_lead + s, dtype, sharding=where)
  clients = federated.ClientData(sds((rows, n) + row, data_dtype.numpy_dtype(cfg.data_dtype),
                                     client_sharding),
                                 sds((rows, n), np.int32, client_sharding),
                                 sds((rows, n), np.bool_, client_sharding),
                                 sds((rows,), np.int32, client_sharding))
  test_sharding = sharding.leading(mesh, sharding.SWEEP) if stacked else sharding.replicated(mesh)
  t = shape.test_rows
  test = federated.TestData(sds((t,) + row, np.float32, test_sharding),
                            sds((t,), np.int32, test_sharding), sds((t,), np.bool_, test_sharding))
  return ProgramInputs(spec, state, clients, test, hparams, evaluated)


def evaluated_clients(count: int, shape: DataShape, dtype: str, mesh) -> federated.ClientData:
  """ShapeDtypeStructs of a streamed round's `count` (E) evaluated clients on `mesh`,
  replicated as `cohort_stream.gather` puts them: x [E, N, ...] in `dtype` (a
  `data_dtype.DTYPES` entry), y int32[E, N], mask bool[E, N], client_id int32[E]."""
  placed = sharding.replicated(mesh)
  sds = lambda s, dt: jax.ShapeDtypeStruct((count,) + s, dt, sharding=placed)
  n = shape.capacity
  return federated.ClientData(sds((n,) + tuple(shape.row_shape),
                                  data_dtype.numpy_dtype(dtype)),
                              sds((n,), np.int32), sds((n,), np.bool_), sds((), np.int32))
