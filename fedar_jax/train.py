"""The driver: build the experiment, run the compiled round for every round, write the workdir.

`build` composes small builders: `build_layout` (the round's client layout and
rows), `load_data` / `prepare_data` (this process's padded, scaled clients),
`build_resampler`, and the --model's builder (`model_builder`: a new model is one
function returning a `Model`, registered in methods/builtin.py).

Workdir contents:
  metrics.csv   one row per round (written and flushed as each round ends)
  summary.json  the config, final metrics, compile_s, round_s, device
  config.json   the settings the workdir was started with (a rerun must match)
  checkpoints/  Orbax checkpoints; rerunning the same command resumes from the newest
  partition.*   per-client class counts and IRs (json, csv, png; data/summary.py)
  tb/           TensorBoard events: every metrics.csv column per round (tensorboard_writer.py)
  plots/metrics_per_round.png   the metrics per round (report.write_run_plot)

The client axis is sharded over a mesh of all devices (of all processes in a
multi-host run, where each process loads only its own clients and process 0
writes the workdir).
"""
import concurrent.futures
import functools
import json
import os
import statistics
import time
from typing import Callable, NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from fedar_jax import checkpoint
from fedar_jax import client_block_fit
from fedar_jax import distributed
from fedar_jax import interrupts
from fedar_jax import latent
from fedar_jax import methods
from fedar_jax.methods import registry
from fedar_jax import metrics
from fedar_jax import models
from fedar_jax import pretraining
from fedar_jax import progress
from fedar_jax import precision
from fedar_jax import resample
from fedar_jax import fedar_round
from fedar_jax import sampling
from fedar_jax import server
from fedar_jax import sharding
from fedar_jax import tensorboard_writer
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import ConfigError, RunConfig
from fedar_jax.data import federated
from fedar_jax.data import standardize as standardize_lib
from fedar_jax.data import summary as data_summary
from fedar_jax.data.load import FederatedDataset, load_federated


class Experiment(NamedTuple):
  """A built run: the static round spec, data, initial state and traced hyperparameters."""
  spec: fedar_round.RoundSpec
  data: FederatedDataset
  state: fedar_round.ServerState
  hparams: fedar_round.HParams


# Clients per block for a CNN on CPU when --client_block is 0 (BUILD_NOTES, "Conv models on CPU").
CPU_CNN_CLIENT_BLOCK = 1


def auto_client_block(cfg: RunConfig, platform: str) -> int:
  """The client block the round uses: --client_block if given (> 0), else by platform and model.

  0 (automatic): a CNN on CPU runs CPU_CNN_CLIENT_BLOCK client at a time (a
  scan over clients: the least CPU time per round on a few cores, and one
  client's image activations in memory instead of all); everything else (the
  MLP anywhere, any model on GPU/TPU) vmaps all clients in one block.
  Results are the same either way (exact running FedAvg sum, to float rounding).
  """
  if cfg.client_block > 0:
    return cfg.client_block
  if cfg.model == 'cnn' and platform == 'cpu':
    return CPU_CNN_CLIENT_BLOCK
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


def build_layout(cfg: RunConfig, mesh) -> ClientRows:
  """The client layout of `cfg` (sampling, blocks, `mesh`) and its client rows."""
  per_round = sampling.clients_per_round(cfg.num_clients, cfg.clients_per_round,
                                         cfg.client_fraction)
  layout = fedar_round.ClientLayout(
      num_clients=cfg.num_clients,
      clients_per_round=per_round if per_round < cfg.num_clients else 0,
      client_block=client_block_fit.choose(cfg, mesh), mesh=mesh)
  rows = fedar_round.data_rows(layout, cfg.num_clients)
  start, stop = (0, rows) if mesh is None else distributed.local_rows(
      sharding.leading(mesh), rows)
  return ClientRows(layout, rows, start, stop)


def load_data(cfg: RunConfig, mesh=None) -> FederatedDataset:
  """The data `cfg` names (drawn with its effective data seed): the client rows
  this process's devices hold under `mesh` (all rows without one), padded with
  empty clients to the rows the round's layout needs (`fedar_round.data_rows`)."""
  _, _, start, stop = build_layout(cfg, mesh)
  data = load_federated(cfg.replace(seed=cfg.effective_data_seed),
                        client_ids=range(start, min(stop, cfg.num_clients)))
  return data._replace(clients=federated.append_empty_clients(
      data.clients, stop - start, max(start, cfg.num_clients)))


def prepare_data(cfg: RunConfig, data: FederatedDataset, rows: ClientRows) -> FederatedDataset:
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
  the data's (over all processes). The resampler works on rows [N, D]; a model
  builder wraps it (`resample.flattened`) for image rows.
  """
  num_classes = len(data.class_names)
  return resample.make_resampler(
      cfg.resampler, num_classes=num_classes, capacity=data.clients.x.shape[1],
      max_class_count=max_class_count or distributed.global_max(
          federated.max_class_count(data.clients, num_classes)),
      **{name: getattr(cfg, name) for name in resample.OPTION_NAMES})


class Model(NamedTuple):
  """What a model builder gives the round.

  apply_fn: (params, x[B, ...]) -> logits[B, K] for the data's rows x[..., *row shape].
  params: the initial global parameters (from key `cfg.seed`).
  resampler: the client resampler for the data's rows (the given one, flattened
  for image rows where the update resamples input rows).
  local_update: a custom single-client update (`fedar_round.local_update_fn`'s
  signature), or None for the standard `client.client_update`.
  """
  apply_fn: Callable
  params: object
  resampler: resample.Resampler
  local_update: Callable | None = None


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
  if x.ndim > 3:
    return Model(models.flat_apply(model.apply), params, resample.flattened(resampler))
  return Model(model.apply, params, resampler)


def build_cnn(cfg: RunConfig, data: FederatedDataset, resampler: resample.Resampler) -> Model:
  """--model=cnn: conv encoder + MLP head on images x[C, N, H, W, ch].

  --latent_resampling=none resamples the flattened input images; joint/frozen
  resample encoder outputs in the client update (`latent.make_latent_update`),
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
    return Model(model.apply, params, resample.flattened(resampler))
  if cfg.latent_resampling == 'frozen' and cfg.pretrain_epochs:
    pretrain = precision.with_matmul_precision(latent.pretrain, cfg.matmul_precision)
    params = pretrain(model, params, jax.random.key(cfg.seed + 1),
                      c.x.reshape((-1,) + c.x.shape[2:]), c.y.reshape(-1),
                      c.mask.reshape(-1), learning_rate=cfg.learning_rate,
                      epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size)
  local_update = latent.make_latent_update(model, resampler, num_classes, cfg.local_epochs,
                                           cfg.batch_size, cfg.latent_resampling)
  return Model(model.apply, params, resampler, local_update)


def model_builder(name: str) -> Callable[..., Model]:
  """The builder (cfg, data, resampler) -> Model of --model=`name`: a model is one builder
  registered in the method registry (methods/builtin.py)."""
  return registry.resolve('model', name)


def build(cfg: RunConfig, data: FederatedDataset | None = None, mesh=None,
          max_class_count: int | None = None) -> Experiment:
  """Creates data (unless given), model, resampler and initial global state for `cfg`.

  With a `mesh`, the round shards clients over it and only the client rows this
  process's devices hold are loaded (`load_data`). Given `data` holds all
  clients, or (multi-process) exactly `load_data`'s rows for this process.
  max_class_count: the resamplers' static bound on a client's largest class
  count; default the data's (over all processes).
  """
  rows = build_layout(cfg, mesh)
  data = prepare_data(cfg, load_data(cfg, mesh) if data is None else data, rows)
  model = model_builder(cfg.model)(cfg, data, build_resampler(cfg, data, max_class_count))
  spec = fedar_round.RoundSpec(model.apply_fn, model.resampler, len(data.class_names),
                             cfg.local_epochs, cfg.batch_size, local_update=model.local_update,
                             methods=methods.methods_of(cfg),
                             matmul_precision=cfg.matmul_precision, **rows.layout._asdict())
  method_params = methods.params_of(cfg)
  opt_state = server.make_server(spec.methods).init(model.params, method_params)
  return Experiment(spec, data, fedar_round.ServerState(model.params, jnp.int32(0), opt_state),
                    fedar_round.HParams.create(cfg.threshold, cfg.learning_rate, cfg.seed,
                                             method_params, attackers(cfg, data)))


def attackers(cfg: RunConfig, data: FederatedDataset) -> np.ndarray | None:
  """bool[rows] by client slot: whose update is scaled (--attack=scale), else None.
  Padding rows are never attackers."""
  if cfg.attack != 'scale':
    return None
  scaled = np.zeros(data.clients.x.shape[0], bool)
  if data.attackers is not None:
    scaled[:len(data.attackers)] = data.attackers
  return scaled


def csv_header(class_names) -> list[str]:
  return (['round', *metrics.METRIC_NAMES] + [f'recall_{n}' for n in class_names]
          + ['resampled_clients', 'dropped_clients', 'fallback_clients', 'mean_client_ir',
             'train_loss', 'round_s'])


def csv_row(round_index: int, out: fedar_round.RoundOutput, seconds: float) -> list:
  """One metrics.csv row; client statistics over the round's participating clients."""
  return csv_rows(round_index, jax.tree.map(lambda a: a[None], sharding.fetch(out)), seconds)[0]


def csv_rows(first_round: int, outs: fedar_round.RoundOutput, seconds: float) -> list[list]:
  """metrics.csv rows of a block of R rounds from first_round, computed at once.

  outs: NumPy leaves [R, ...], or [R, S, ...] for a sweep's S points (rows
  round-major, then point). Client statistics are over each round's
  participating clients (slots with client_index >= 0); train_loss is the mean
  over those with a finite loss (NaN if none).
  """
  m, stats = outs.metrics, outs.clients
  lead = np.shape(m['accuracy'])
  real = (np.ones(np.shape(stats.ir), bool) if outs.client_index is None
          else outs.client_index >= 0)
  count = np.maximum(np.sum(real, -1), 1)
  resampled, fallback = (np.sum(a & real, -1) for a in (stats.resampled, stats.fallback))
  ir = np.sum(np.where(real, stats.ir, 0), -1, dtype=np.float64) / count
  # A client dropped for non-finite data has a non-finite loss: mean over the finite ones.
  finite = real & np.isfinite(stats.loss)
  loss = (np.sum(np.where(finite, stats.loss, 0), -1, dtype=np.float64)
          / np.where(np.any(finite, -1), np.maximum(np.sum(finite, -1), 1), np.nan))
  dropped = m.get('dropped_clients', np.zeros(lead, np.int32))
  return [[first_round + i[0]] + [f'{float(m[k][i]):.6f}' for k in metrics.METRIC_NAMES]
          + [f'{float(r):.6f}' for r in m['recall'][i]]
          + [int(resampled[i]), int(dropped[i]), int(fallback[i]), f'{float(ir[i]):.4f}',
             f'{float(loss[i]):.6f}', f'{seconds:.4f}'] for i in np.ndindex(*lead)]


# A compiled call runs at most about this many seconds of rounds (at the speed measured so
# far), so a signal, a progress update or a CSV row is never far away on a slow machine.
CALL_SECONDS = 2.0


class CallPlan:
  """The compiled calls of rounds done+1..rounds as (first round, count).

  Calls never cross a checkpoint (a multiple of `every`) or the last round, and
  hold at most `block` rounds (the compiled block length). The first call runs
  one round; later ones as many as fit in `seconds` at the speed `record`ed so
  far. Results do not depend on the split (the round count is traced).
  """

  def __init__(self, done: int, rounds: int, every: int, block: int,
               seconds: float | None = None):
    self.next, self.rounds, self.every, self.block = done + 1, rounds, every, block
    self.seconds = CALL_SECONDS if seconds is None else seconds
    self.per_round = None

  def __bool__(self) -> bool:
    return self.next <= self.rounds

  def __iter__(self):
    while self.next <= self.rounds:
      first = self.next
      count = fedar_round.checkpoint_end(first, self.rounds, self.every) - first + 1
      count = min(count, self.block, 1 if self.per_round is None else max(
          1, int(self.seconds / max(self.per_round, 1e-9))))
      self.next = first + count
      yield first, count

  def record(self, count: int, seconds: float) -> None:
    self.per_round = seconds / count

  def checkpoint_due(self, last_round: int) -> bool:
    """Whether the call that ended with `last_round` ends on a checkpoint."""
    return last_round == fedar_round.checkpoint_end(last_round, self.rounds, self.every)


# The most rounds one compiled call can run (its outputs are stacked [block, ...]).
MAX_BLOCK = 50


def block_length(cfg: RunConfig) -> int:
  """Rounds the compiled call holds: up to the next checkpoint, at most MAX_BLOCK."""
  return min(cfg.checkpoint_every, cfg.rounds, MAX_BLOCK)


class Program(NamedTuple):
  """A run's compiled programs. prepare: (clients, hparams) -> the round's client data
  (the pre-training step of --resample_every=once; None for round). step: a block of
  rounds, (state, clients, test, hparams, count) -> (state, RoundOutput [block, ...])."""
  prepare: Callable | None
  step: Callable


def compile_program(spec: fedar_round.RoundSpec, block_rounds: int, resample_every: str, state,
                    clients, test, hparams, sweep: Callable | None = None,
                    sweep_prepare: Callable | None = None,
                    options: dict | None = None) -> Program:
  """Compiles the run's programs for these arguments' shapes.

  options: XLA compiler options (default `compiler_options()`).
  sweep: for a sweep (leaves of state and hparams [S, ...]), builds the
  vmapped round from (round spec, prepared: whether the clients are the
  per-point output of the pre-training step); None for a single run.
  sweep_prepare: for a sweep, maps `pretraining.make_prepare`'s function to its
  version over the sweep axis.
  """
  prepare = pending = None
  round_spec = spec
  options = compiler_options() if options is None else options
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    if resample_every == 'once':
      if spec.local_update is not None:
        raise ConfigError('resample_every', 'once needs the standard client update (not '
                          'latent resampling); use --resample_every=round')
      fn = pretraining.make_prepare(spec)
      if sweep is not None:
        fn = sweep_prepare(fn)
      lowered, round_spec = jax.jit(fn).lower(clients, hparams), pretraining.round_spec(spec)
      step_options = {**options, **once_compiler_options()}
      if sweep is None and jax.device_count() == 1:
        # One device: the outputs' sharding is known before compiling, so the two
        # programs compile at once (XLA compiles a program on one thread).
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        clients = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                               lowered.out_info)
        pending = pool.submit(lowered.compile, step_options)
      else:
        prepare = lowered.compile(step_options)
        # The round is compiled for the shardings the compiled step really outputs.
        clients = prepare.out_info
    round_fn = None if sweep is None else sweep(round_spec, resample_every == 'once')
    rounds = compile_rounds(round_spec, block_rounds, state, clients, test, hparams, round_fn,
                            options)
    if pending is not None:
      prepare = pending.result()
  return Program(prepare, rounds)


def compile_rounds(spec: fedar_round.RoundSpec, block_rounds: int, state, clients, test, hparams,
                   round_fn, options: dict):
  """The compiled block of rounds (`fedar_round.make_rounds`, XLA `options`) for these
  arguments' shapes.

  Returns step(state, clients, test, hparams, count) -> (state, RoundOutput [block_rounds, ...]).
  """
  rounds = jax.jit(fedar_round.make_rounds(spec, block_rounds, round_fn))
  return rounds.lower(state, clients, test, hparams, jnp.int32(0)).compile(options)


GPU_BACKENDS = ('gpu', 'cuda', 'rocm')  # jax.default_backend() names of GPUs


def compiler_options(fast_compile: bool = False) -> dict:
  """XLA options for the run's programs (BUILD_NOTES, *Compile time*).

  CPU: XLA's classic fusion emitters instead of its MLIR ones (0.37-0.96x the
  compile time; round time within the machine's noise). GPU with `fast_compile`
  (--fast_compile): no Triton GEMM fusions, so no Triton tiling autotuning (H200,
  1,000 clients, the block of rounds: compile 3.3 -> 1.5 s; round 10.1 -> 14.7 ms).
  Otherwise XLA's defaults (the pre-training step adds `once_compiler_options()`).
  """
  backend = jax.default_backend()
  if backend == 'cpu':
    return {'xla_cpu_use_fusion_emitters': False}
  if backend in GPU_BACKENDS and fast_compile:
    return {'xla_gpu_enable_triton_gemm': False}
  return {}


def once_compiler_options() -> dict:
  """Extra XLA options for the pre-training step, which runs once per run or group.

  CPU: LLVM optimisation level 1 instead of 3: its compile 1.5-2.0 -> 0.9-1.1 s
  for the k-means and SVM samplers, the step 3-5 % slower, the same rows bit
  for bit (BUILD_NOTES, *The two programs compile at once*). GPU: no Triton GEMM
  fusions (cuBLAS), so no Triton tiling autotuning of the resampler's distance
  matrices: H200, SMOTE, 1,000 clients: the step's compile 10.0 -> 1.35 s, its
  run 4.18 -> 4.13 ms (BUILD_NOTES, *Where a GPU's compile goes*). The block of
  rounds keeps XLA's defaults.
  """
  backend = jax.default_backend()
  if backend == 'cpu':
    return {'xla_backend_optimization_level': 1}
  if backend in GPU_BACKENDS:
    return {'xla_gpu_enable_triton_gemm': False}
  return {}


def run_block(step, state, clients, test, hparams, count: int):
  """One call of the compiled block running `count` rounds.

  Returns (state, outputs on the device [block_rounds, ...], the first `count`
  outputs as NumPy [count, ...] fetched in one transfer, seconds).
  """
  t = time.perf_counter()
  state, device_outs = step(state, clients, test, hparams, jnp.int32(count))
  # Fetch, then slice (a NumPy view): slicing on the device first would compile a
  # slice program per leaf for every new count and dispatch one per leaf per call;
  # measured 0.05 ms vs 0.3-0.9 ms per call (240-500 ms for a new count) on the
  # CPU at C = 100 and 10,000 (experiments/driver_overhead.py, BUILD_NOTES). The
  # rows past `count` are only in a run's last, partial call.
  outs = jax.tree.map(lambda a: a[:count], sharding.fetch(device_outs))
  return state, device_outs, outs, time.perf_counter() - t


def round_output(outs, i: int):
  """Round i of stacked outputs (leading axis [rounds])."""
  return jax.tree.map(lambda a: a[i], outs)


def device_description() -> str:
  d = jax.devices()
  hosts = f' on {jax.process_count()} processes' if jax.process_count() > 1 else ''
  return f'{len(d)} x {d[0].platform}:{d[0].device_kind}{hosts}'


def setup(cfg: RunConfig):
  """Joins the processes of a multi-host run, makes the device mesh, builds the experiment.

  Returns (Experiment, mesh). Raises DataError / ConfigError for data that
  does not fit the flags; nothing has been written to the workdir by then.
  """
  distributed.initialize(cfg.coordinator_address, cfg.num_processes, cfg.process_id)
  mesh = sharding.make_mesh()
  with progress.stage('loading data, building the model'):
    exp = build(cfg, mesh=mesh)
  return exp, mesh


def write_partition_files(workdir: str, cfg: RunConfig, data: FederatedDataset) -> None:
  """Writes partition.{json,csv,png} for the real clients (single-process runs only)."""
  if jax.process_count() > 1:
    logging.info('multi-host run: no partition summary (each host holds only its clients)')
    return
  real = np.asarray(data.clients.client_id) < cfg.num_clients
  # The summary reads labels and masks only: take no copy of the features (GBs at scale).
  clients = federated.take_clients(data.clients._replace(x=data.clients.x[:, :0]), real)
  os.makedirs(workdir, exist_ok=True)
  data_summary.write_partition_summary(workdir, data._replace(clients=clients))


def train_and_evaluate(cfg: RunConfig, workdir: str, prepared=None) -> dict:
  """Runs `cfg.rounds` FedAR rounds and writes metrics.csv and summary.json to `workdir`.

  Resumes from the newest checkpoint in `workdir/checkpoints` if there is one
  (raises ConfigError if the workdir was started with other settings).
  `prepared` is `setup(cfg)`'s result, made here if not given.
  Returns the summary dict.
  """
  workdir_lib.check_resume(workdir, 'config.json', cfg.to_dict())
  exp, mesh = prepared or setup(cfg)
  if distributed.is_writer():
    write_partition_files(workdir, cfg, exp.data)
  rows = fedar_round.data_rows(exp.spec, cfg.num_clients)
  clients = sharding.shard_clients(exp.data.clients, mesh, rows)
  test, state, hparams = sharding.replicate((exp.data.test, exp.state, exp.hparams), mesh)
  local_rows = exp.data.clients.x.shape[0]
  exp = exp._replace(data=exp.data._replace(clients=None))  # Free the host copy (GBs at scale).
  blocks, block_size = fedar_round.slot_layout(exp.spec, cfg.num_clients)
  logging.info('data: %d clients (%d rows, %d here) x %d rows x %s features, %d classes; '
               'resampler %s (capacity %d rows); %s per round in %d block(s) of %d; %s',
               cfg.num_clients, rows, local_rows, *clients.x.shape[1:2],
               clients.x.shape[2:], exp.spec.num_classes, exp.spec.resampler.name,
               exp.spec.resampler.capacity, exp.spec.clients_per_round or 'all', blocks,
               block_size, device_description())
  writer_process = distributed.is_writer()

  ckpt_dir = os.path.join(workdir, 'checkpoints')
  times, last_metrics = [], None
  # The newest checkpoint that reads back (newer unreadable ones are set aside).
  done, rows = checkpoint.resume_point(ckpt_dir, cfg.keep_checkpoints)
  calls = CallPlan(done, cfg.rounds, cfg.checkpoint_every, block_length(cfg))
  compile_s = 0.0
  if calls:  # A finished run compiles nothing.
    t0 = time.perf_counter()
    with progress.stage('compiling the round'):
      program = compile_program(exp.spec, block_length(cfg), cfg.resample_every, state, clients,
                                test, hparams, options=compiler_options(cfg.fast_compile))
    compile_s = time.perf_counter() - t0
    logging.info('compiled the round (%d rounds per call) in %.2fs', block_length(cfg),
                 compile_s)
    if program.prepare is not None:  # Resampled once; the rows stay on the device.
      clients = program.prepare(clients, hparams)

  if writer_process:
    workdir_lib.save_settings(workdir, 'config.json', cfg.to_dict())
  ckpt = checkpoint.Checkpoints(ckpt_dir, cfg.keep_checkpoints)
  if done:
    state, last_metrics = ckpt.restore(state, step=done)
    logging.info('resuming after round %d from %s', done, ckpt_dir)
  header = csv_header(exp.data.class_names)
  f, writer = workdir_lib.open_rows(
      os.path.join(workdir, 'metrics.csv') if writer_process else None, header, rows=rows)
  tb = (tensorboard_writer.ScalarWriter(os.path.join(workdir, 'tb'), done + 1)
        if writer_process else None)
  bar = progress.Progress(cfg.rounds, 1, desc='run')
  bar.skip(done)
  try:
    with f, interrupts.deferred(enabled=jax.process_count() == 1):
      for first, count in calls:
        state, device_outs, outs, seconds = run_block(program.step, state, clients, test,
                                                      hparams, count)
        calls.record(count, seconds)
        for r, row in enumerate(csv_rows(first, outs, seconds / count), first):
          times.append(seconds / count)
          rows.append(row)
          writer.writerow(row)
          cell = dict(zip(header, row))
          if tb is not None:
            tb.write(r, cell)
          bar.round_done(times[-1], round_label(cell, exp.spec.clients_per_round
                                                or cfg.num_clients))
        f.flush()
        last_metrics = jax.tree.map(lambda a: a[count - 1], device_outs.metrics)
        if calls.checkpoint_due(first + count - 1) or interrupts.pending():
          ckpt.save(state, last_metrics, rows=rows)
        if interrupts.pending():
          interrupts.stop(first + count - 1)
  finally:
    bar.close()
    if tb is not None:
      tb.close()
  ckpt.close()
  last_metrics = sharding.fetch(last_metrics)
  final = {k: float(v) for k, v in last_metrics.items() if np.ndim(v) == 0}
  final['recall'] = {n: float(v) for n, v in zip(exp.data.class_names, last_metrics['recall'])}
  summary = {
      'config': cfg.to_dict(),
      'final': final,
      'confusion': last_metrics['confusion'].tolist(),
      'compile_s': compile_s,
      'round_s': statistics.median(times) if times else None,
      'device': device_description(),
  }
  if writer_process:
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    from fedar_jax import report  # Imports matplotlib.
    report.write_run_plot(workdir)
  return summary


def round_label(cell: dict, participants: int) -> str:
  """The progress text of a round: 'gmean 0.801 acc 0.812 f1 0.810 resampled 10/10 0.012s'."""
  dropped = int(cell['dropped_clients'])
  return (f"gmean {float(cell['gmean']):.3f} acc {float(cell['accuracy']):.3f} "
          f"f1 {float(cell['f1']):.3f} resampled {cell['resampled_clients']}/{participants}"
          + (f' dropped {dropped}' if dropped else '') + f"  {float(cell['round_s']):.3f}s")
