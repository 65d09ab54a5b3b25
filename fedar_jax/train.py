"""Builds a run's experiment: client layout, data, model, resampler and initial state.

`build` composes small builders: `build_layout` (the round's client layout and
rows), `load_data` / `pad_and_standardize` (this process's padded, scaled clients),
`build_resampler`, and the --model's builder (`model_builder`: a new model is one
function returning a `Model`, registered in methods/builtin.py).
`loop.train_and_evaluate` runs what it builds.
"""
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedar_jax import client
from fedar_jax import distributed
from fedar_jax import latent
from fedar_jax import memory_estimate
from fedar_jax import methods
from fedar_jax.methods import registry
from fedar_jax import models
from fedar_jax import precision
from fedar_jax import resample
from fedar_jax import fedar_round
from fedar_jax import sampling
from fedar_jax import server
from fedar_jax import sharding
from fedar_jax.config import ConfigError, RunConfig
from fedar_jax.data import cohort_source
from fedar_jax.data import federated
from fedar_jax.data import standardize as standardize_lib
from fedar_jax.data.load import FederatedDataset, load_federated


class Experiment(NamedTuple):
  """A built run: the static round spec, data, initial state and traced hyperparameters.
  source: the CohortSource of a streamed run (`build_streamed`; its `data` then holds one
  client and the test set), else None."""
  spec: fedar_round.RoundSpec
  data: FederatedDataset
  state: fedar_round.ServerState
  hparams: fedar_round.HParams
  source: object = None


# Clients per block for a CNN on CPU when --client_block is 0 (BUILD_NOTES, "Conv models on CPU").
CPU_CNN_CLIENT_BLOCK = 1
# Clients per block for the MLP on CPU when --client_block is 0 and a round has more clients:
# a faster round than one block of all clients (BUILD_NOTES, "Client blocks on CPU").
CPU_MLP_CLIENT_BLOCK = 25


def auto_client_block(cfg: RunConfig, platform: str) -> int:
  """The client block the round uses: --client_block if given (> 0), else by platform and model.

  0 (automatic): a CNN on CPU runs CPU_CNN_CLIENT_BLOCK client at a time (a
  scan over clients: the least CPU time per round on a few cores, and one
  client's image activations in memory instead of all); the MLP on CPU runs blocks
  of about CPU_MLP_CLIENT_BLOCK clients when a round has more; everything else (any
  model on GPU/TPU, the MLP with fewer clients) vmaps all clients in one block.
  Results are the same either way (exact running FedAvg sum, to float rounding).
  """
  if cfg.client_block > 0:
    return cfg.client_block
  if cfg.model == 'cnn' and platform == 'cpu':
    return CPU_CNN_CLIENT_BLOCK
  per_round = sampling.clients_per_round(cfg.num_clients, cfg.clients_per_round,
                                         cfg.client_fraction)
  if cfg.model == 'mlp' and platform == 'cpu' and per_round > CPU_MLP_CLIENT_BLOCK:
    return CPU_MLP_CLIENT_BLOCK
  return 0


class ClientRows(NamedTuple):
  """The round's client layout and the client rows it needs.

  layout: RoundSpec's scale fields. rows: client rows of the data (the C real
  clients, then empty padding clients up to what the layout needs,
  `fedar_round.data_rows`). [start, stop): the rows this process's devices hold
  ([0, rows) without a mesh or on one process).
  """
  layout: fedar_round.ClientLayout
  rows: int
  start: int
  stop: int


def build_layout(cfg: RunConfig, mesh, client_block: int | None = None) -> ClientRows:
  """The client layout of `cfg` (sampling, blocks, `mesh`) and its client rows.

  client_block: the clients per block (0: one block); None takes `auto_client_block`'s
  (runs choose it from compiled memory: `client_block_fit.choose`)."""
  per_round = sampling.clients_per_round(cfg.num_clients, cfg.clients_per_round,
                                         cfg.client_fraction)
  layout = fedar_round.ClientLayout(
      num_clients=cfg.num_clients,
      clients_per_round=per_round if per_round < cfg.num_clients else 0,
      client_block=(auto_client_block(cfg, jax.devices()[0].platform) if client_block is None
                    else client_block), mesh=mesh, client_sampling=cfg.client_sampling)
  rows = fedar_round.data_rows(layout, cfg.num_clients)
  start, stop = (0, rows) if mesh is None else distributed.local_rows(
      sharding.leading(mesh), rows)
  return ClientRows(layout, rows, start, stop)


def load_data(cfg: RunConfig, mesh=None, rows: ClientRows | None = None) -> FederatedDataset:
  """The data `cfg` names (drawn with its effective data seed): the client rows
  this process's devices hold under `mesh` (all rows without one), padded with
  empty clients to the rows the round's layout needs (`fedar_round.data_rows`).
  rows: `build_layout(cfg, mesh)`, made here if not given."""
  _, _, start, stop = rows or build_layout(cfg, mesh)
  data = load_federated(cfg.replace(seed=cfg.effective_data_seed),
                        client_ids=range(start, min(stop, cfg.num_clients)))
  return data._replace(clients=federated.append_empty_clients(
      data.clients, stop - start, max(start, cfg.num_clients)))


def pad_and_standardize(cfg: RunConfig, data: FederatedDataset,
                        rows: ClientRows) -> FederatedDataset:
  """`data` as the round takes it: its clients padded with empty ones to this process's
  rows (ClientData x[stop - start, N, ...]), then scaled (--standardize, statistics over
  all processes), so resampling sees the scaled rows.

  `data` holds all clients, or (multi-process) exactly `load_data`'s rows.
  """
  start, stop = rows.start, rows.stop
  if (start, stop) != (0, rows.rows) and data.clients.x.shape[0] != stop - start:
    raise ValueError('given data must be loaded per process in a multi-process run')
  data = data._replace(clients=federated.append_empty_clients(
      data.clients, stop - start, max(start, cfg.num_clients)))
  return standardize_lib.standardize(data, cfg.standardize, distributed.global_sum)


def build_resampler(cfg: RunConfig, data: FederatedDataset,
                    max_class_count: int | None = None) -> resample.Resampler:
  """--resampler with its options, for clients of `data`'s capacity N (rows of x[C, N, ...]).

  max_class_count: the static bound on a client's largest class count; default
  the data's (over all processes). Image rows are resampled as vectors.
  """
  num_classes = len(data.class_names)
  return resampler_for(cfg, num_classes, data.clients.x.shape[1],
                       max_class_count or distributed.global_max(
                           federated.max_class_count(data.clients, num_classes)))


def resampler_for(cfg: RunConfig, num_classes: int, capacity: int,
                  max_class_count: int) -> resample.Resampler:
  """--resampler with its options for K classes, N = `capacity` rows per client and the
  static bound `max_class_count` (from data: `build_resampler`; from shapes alone:
  abstract_build)."""
  return resample.make_resampler(
      cfg.resampler, num_classes=num_classes, capacity=capacity,
      max_class_count=max_class_count,
      **{name: getattr(cfg, name) for name in resample.OPTION_NAMES})


class Model(NamedTuple):
  """What a model builder gives the round.

  apply_fn: (params, x[B, ...]) -> logits[B, K] for the data's rows x[..., *row shape].
  params: the initial global parameters (from key `cfg.seed`).
  client_pipeline: a custom client pair (`client.ClientPipeline`), or None for the
  standard `client.fedar_client`.
  """
  apply_fn: Callable
  params: object
  client_pipeline: client.ClientPipeline | None = None


@functools.partial(jax.jit, static_argnums=0)
def init_params(model, key, x):
  """`model.init(key, x)` as one compiled program (not an eager dispatch per initializer
  op), compiled once per model configuration: a sweep's points share it (a jit of each
  new module's bound `init` would compile once per point)."""
  return model.init(key, x)


def build_mlp(cfg: RunConfig, data: FederatedDataset, resampler: resample.Resampler) -> Model:
  """--model=mlp: an MLP on rows [D], or on image rows [H, W, ch] flattened."""
  x = data.clients.x  # [C, N, ...]
  model = models.MLP(num_classes=len(data.class_names), hidden=tuple(cfg.hidden))
  params = init_params(model, jax.random.key(cfg.seed), jnp.asarray(x[0, :1]).reshape(1, -1))
  del resampler  # The standard client resamples the rows.
  if x.ndim > 3:
    return Model(models.flat_apply(model.apply), params)
  return Model(model.apply, params)


def build_cnn(cfg: RunConfig, data: FederatedDataset, resampler: resample.Resampler) -> Model:
  """--model=cnn: conv encoder + MLP head on images x[C, N, H, W, ch].

  --latent_resampling=none resamples the flattened input images; joint/frozen
  resample encoder outputs in the client's prepare (`latent.make_latent_client`),
  frozen after --pretrain_epochs of central pretraining on the pooled clients.
  """
  c = data.clients
  if c.x.ndim != 5:
    raise ConfigError('model', f'cnn needs images [N, H, W, ch]; the data has rows of shape '
                      f'{c.x.shape[2:]}')
  num_classes = len(data.class_names)
  # Patch-matmul convolutions on CPU (vmapped lax convolutions over per-client
  # parameters are grouped convolutions, slow on XLA:CPU); lax ones elsewhere.
  model = models.cnn(num_classes, cfg.hidden, cfg.latent_dim, cfg.cnn_channels,
                     patches=jax.devices()[0].platform == 'cpu')
  params = init_params(model, jax.random.key(cfg.seed), jnp.asarray(c.x[0, :1]))
  if cfg.latent_resampling == 'none':
    return Model(model.apply, params)
  if cfg.latent_resampling == 'frozen' and cfg.pretrain_epochs:
    pretrain = precision.with_matmul_precision(latent.pretrain, cfg.matmul_precision)
    params = pretrain(model, params, jax.random.key(cfg.seed + 1),
                      c.x.reshape((-1,) + c.x.shape[2:]), c.y.reshape(-1),
                      c.mask.reshape(-1), learning_rate=cfg.learning_rate,
                      epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size)
  latent_client = latent.make_latent_client(model, resampler, num_classes, cfg.local_epochs,
                                            cfg.batch_size, cfg.latent_resampling)
  return Model(model.apply, params, latent_client)


def model_builder(name: str) -> Callable[..., Model]:
  """The builder (cfg, data, resampler) -> Model of --model=`name`: a model is one builder
  registered in the method registry (methods/builtin.py)."""
  return registry.resolve('model', name)


def build(cfg: RunConfig, data: FederatedDataset | None = None, mesh=None,
          max_class_count: int | None = None, rows: ClientRows | None = None) -> Experiment:
  """Creates data (unless given), model, resampler and initial global state for `cfg`.

  With a `mesh`, the round shards clients over it and only the client rows this
  process's devices hold are loaded (`load_data`). Given `data` holds all
  clients, or (multi-process) exactly `load_data`'s rows for this process.
  max_class_count: the resamplers' static bound on a client's largest class
  count; default the data's (over all processes).
  rows: the client layout (`build_layout`), made here if not given.
  """
  rows = rows or build_layout(cfg, mesh)
  data = pad_and_standardize(cfg, load_data(cfg, mesh, rows) if data is None else data, rows)
  resampler = build_resampler(cfg, data, max_class_count)
  memory_estimate.check_model(cfg, data.clients.x.shape[2:], len(data.class_names),
                              memory_estimate.device_memory_bytes())
  model = model_builder(cfg.model)(cfg, data, resampler)
  spec, state, hparams = round_parts(cfg, model, resampler, len(data.class_names),
                                     rows.layout, attackers(cfg, data))
  return Experiment(spec, data, state, hparams)


def build_streamed(cfg: RunConfig, source, mesh=None,
                   client_block: int | None = None) -> Experiment:
  """The experiment of a run whose cohorts stream from `source` (a CohortSource,
  data/cohort_source.py): its round is the one an in-memory population of the cohort's
  size compiles (`cohort_stream.cohort_layout`); HParams.attackers (--attack=scale) holds
  one entry per cohort slot, replaced by each round's cohort.

  client_block: clients per block (0: one block); None takes `auto_client_block`'s.
  Raises ConfigError for settings a streamed population cannot run.
  """
  from fedar_jax import cohort_stream
  if cfg.num_clients != source.num_clients:
    raise ConfigError('num_clients', f'{cfg.num_clients} differs from the population\'s '
                      f'{source.num_clients} clients')
  if cfg.model == 'cnn' and cfg.latent_resampling == 'frozen' and cfg.pretrain_epochs:
    raise ConfigError('pretrain_epochs', 'pretrains on the pooled clients, which a streamed '
                      'population does not hold; use 0')
  per_round = sampling.clients_per_round(source.num_clients, cfg.clients_per_round,
                                         cfg.client_fraction)
  block = (auto_client_block(cfg, jax.devices()[0].platform) if client_block is None
           else client_block)
  layout = cohort_stream.cohort_layout(per_round, block, mesh)
  class_names = tuple(source.class_names)
  data = FederatedDataset(source.cohort(np.zeros(1, np.int32)), source.test, class_names)
  resampler = resampler_for(cfg, len(class_names), source.capacity,
                            cohort_source.max_class_count(source))
  model = model_builder(cfg.model)(cfg, data, resampler)
  slots = fedar_round.data_rows(layout, per_round)
  spec, state, hparams = round_parts(cfg, model, resampler, len(class_names), layout,
                                     np.zeros(slots, bool) if cfg.attack == 'scale' else None)
  # The round holds only the cohort: the evaluated clients (--eval_clients) stream in
  # beside it and are scored after the round (cohort_stream.StreamedStep).
  spec = spec._replace(eval_clients=0)
  return Experiment(spec, data, state, hparams, source)


def round_parts(cfg: RunConfig, model: Model, resampler: resample.Resampler, num_classes: int,
                layout: fedar_round.ClientLayout, attackers):
  """(RoundSpec, initial ServerState, HParams) of `cfg` for a built model, the same whether
  the data was built (`build`) or only its shapes are known (abstract_build).
  attackers: bool[rows] or None, as `attackers`."""
  spec = fedar_round.RoundSpec(model.apply_fn, resampler, num_classes,
                               cfg.local_epochs, cfg.batch_size,
                               client_pipeline=model.client_pipeline,
                               methods=methods.methods_of(cfg),
                               matmul_precision=cfg.matmul_precision,
                               local_kernel=cfg.local_kernel,
                               eval_clients=cfg.eval_clients, **layout._asdict())
  method_params = methods.params_of(cfg)
  opt_state = server.make_server(spec.methods).init(model.params, method_params)
  # --dp=adaptive: the clip norm is state, starting at --dp_clip_norm.
  dp_clip = jnp.float32(cfg.dp_clip_norm) if cfg.dp == 'adaptive' else None
  return (spec, fedar_round.ServerState(model.params, jnp.int32(0), opt_state, dp_clip),
          fedar_round.HParams.create(cfg.threshold, cfg.learning_rate, cfg.seed,
                                     method_params, attackers))


def attackers(cfg: RunConfig, data: FederatedDataset) -> np.ndarray | None:
  """bool[rows] by client slot: whose update is scaled (--attack=scale), else None.
  Padding rows are never attackers."""
  if cfg.attack != 'scale':
    return None
  scaled = np.zeros(data.clients.x.shape[0], bool)
  if data.attackers is not None:
    scaled[:len(data.attackers)] = data.attackers
  return scaled
