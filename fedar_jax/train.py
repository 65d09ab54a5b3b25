"""The driver: build the experiment, run the compiled round for every round, write the workdir.

Workdir contents:
  metrics.csv   one row per round (written and flushed as each round ends)
  summary.json  the config, final metrics, compile_s, round_s, device
  config.json   the settings the workdir was started with (a rerun must match)
  checkpoints/  Orbax checkpoints; rerunning the same command resumes from the newest
  partition.*   per-client class counts and IRs (json, csv, png; data/summary.py)

The client axis is sharded over a mesh of all devices (of all processes in a
multi-host run, where each process loads only its own clients and process 0
writes the workdir).
"""
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
from fedar_jax import distributed
from fedar_jax import latent
from fedar_jax import metrics
from fedar_jax import models
from fedar_jax import pretraining
from fedar_jax import resample
from fedar_jax import round as round_lib
from fedar_jax import sampling
from fedar_jax import sharding
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import ConfigError, RunConfig
from fedar_jax.data import federated
from fedar_jax.data import summary as data_summary
from fedar_jax.data.load import FederatedDataset, load_federated


class Experiment(NamedTuple):
  """A built run: the static round spec, data, initial state and traced hyperparameters."""
  spec: round_lib.RoundSpec
  data: FederatedDataset
  state: round_lib.ServerState
  hparams: round_lib.HParams


def build(cfg: RunConfig, data: FederatedDataset | None = None, mesh=None) -> Experiment:
  """Creates data (unless given), model, resampler and initial global state for `cfg`.

  With a `mesh`, the round shards clients over it and only the client rows this
  process's devices hold are loaded. The client data is padded with empty
  clients to the rows the round's layout needs (`round_lib.data_rows`); given
  `data` must hold all clients.
  """
  per_round = sampling.clients_per_round(cfg.num_clients, cfg.clients_per_round,
                                         cfg.client_fraction)
  # Only the scale fields decide the client layout; the rest is filled in below.
  layout = round_lib.RoundSpec(
      None, None, 0, 0, 0, num_clients=cfg.num_clients,
      clients_per_round=per_round if per_round < cfg.num_clients else 0,
      client_block=cfg.client_block, mesh=mesh)
  rows = round_lib.data_rows(layout, cfg.num_clients)
  start, stop = (0, rows) if mesh is None else distributed.local_rows(
      sharding.leading(mesh), rows)
  if data is None:
    data = load_federated(cfg.replace(seed=cfg.effective_data_seed),
                          client_ids=range(start, min(stop, cfg.num_clients)))
  elif (start, stop) != (0, rows):
    raise ValueError('given data must be loaded per process in a multi-process run')
  data = data._replace(clients=sharding.pad_clients(data.clients, stop - start,
                                                    max(start, cfg.num_clients)))
  num_classes = len(data.class_names)
  images = data.clients.x.ndim == 5
  if cfg.model == 'cnn' and not images:
    raise ConfigError('model', f'cnn needs images [N, H, W, ch]; the data has rows of shape '
                      f'{data.clients.x.shape[2:]}')
  sample = jnp.asarray(data.clients.x[0, :1])
  capacity = data.clients.x.shape[1]
  resampler = resample.make_resampler(
      cfg.resampler, num_classes=num_classes, capacity=capacity,
      max_class_count=distributed.global_max(
          federated.max_class_count(data.clients, num_classes)),
      **{name: getattr(cfg, name) for name in resample.OPTION_NAMES})
  local_update = None
  if cfg.model == 'cnn':
    model = models.cnn(num_classes, cfg.hidden, cfg.latent_dim, cfg.cnn_channels)
    params = model.init(jax.random.key(cfg.seed), sample)
    if cfg.latent_resampling == 'none':
      resampler = resample.flattened(resampler)
    else:
      if cfg.latent_resampling == 'frozen' and cfg.pretrain_epochs:
        c = data.clients
        params = latent.pretrain(model, params, jax.random.key(cfg.seed + 1),
                                 c.x.reshape((-1,) + c.x.shape[2:]), c.y.reshape(-1),
                                 c.mask.reshape(-1), learning_rate=cfg.learning_rate,
                                 epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size)
      local_update = latent.make_latent_update(model, resampler, num_classes, cfg.local_epochs,
                                               cfg.batch_size, cfg.latent_resampling)
    apply_fn = model.apply
  else:
    model = models.MLP(num_classes=num_classes, hidden=tuple(cfg.hidden))
    params = model.init(jax.random.key(cfg.seed), sample.reshape(1, -1))
    apply_fn = models.flat_apply(model.apply) if data.clients.x.ndim > 3 else model.apply
    if data.clients.x.ndim > 3:
      resampler = resample.flattened(resampler)
  spec = layout._replace(apply_fn=apply_fn, resampler=resampler, num_classes=num_classes,
                         local_epochs=cfg.local_epochs, batch_size=cfg.batch_size,
                         local_update=local_update)
  return Experiment(spec, data, round_lib.ServerState(params, jnp.int32(0)),
                    round_lib.HParams.create(cfg.threshold, cfg.learning_rate, cfg.seed))


def csv_header(class_names) -> list[str]:
  return (['round', *metrics.METRIC_NAMES] + [f'recall_{n}' for n in class_names]
          + ['resampled_clients', 'dropped_clients', 'fallback_clients', 'mean_client_ir',
             'train_loss', 'round_s'])


def csv_row(round_index: int, out: round_lib.RoundOutput, seconds: float) -> list:
  """One metrics.csv row; client statistics over the round's participating clients."""
  return csv_rows(round_index, jax.tree.map(lambda a: a[None], sharding.fetch(out)), seconds)[0]


def csv_rows(first_round: int, outs: round_lib.RoundOutput, seconds: float) -> list[list]:
  """metrics.csv rows of a block of R rounds from first_round, computed at once.

  outs: NumPy leaves [R, ...], or [R, S, ...] for a sweep's S points (rows
  round-major, then point). Client statistics are over each round's
  participating clients (slots with client_index >= 0).
  """
  m, stats = outs.metrics, outs.clients
  lead = np.shape(m['accuracy'])
  real = (np.ones(np.shape(stats.ir), bool) if outs.client_index is None
          else outs.client_index >= 0)
  count = np.maximum(np.sum(real, -1), 1)
  resampled, fallback = (np.sum(a & real, -1) for a in (stats.resampled, stats.fallback))
  ir, loss = (np.sum(np.where(real, a, 0), -1, dtype=np.float64) / count
              for a in (stats.ir, stats.loss))
  dropped = m.get('dropped_clients', np.zeros(lead, np.int32))
  return [[first_round + i[0]] + [f'{float(m[k][i]):.6f}' for k in metrics.METRIC_NAMES]
          + [f'{float(r):.6f}' for r in m['recall'][i]]
          + [int(resampled[i]), int(dropped[i]), int(fallback[i]), f'{float(ir[i]):.4f}',
             f'{float(loss[i]):.6f}', f'{seconds:.4f}'] for i in np.ndindex(*lead)]


def block_length(cfg: RunConfig) -> int:
  """Rounds per compiled call: up to the next checkpoint."""
  return min(cfg.checkpoint_every, cfg.rounds)


class Program(NamedTuple):
  """A run's compiled programs. prepare: (clients, hparams) -> the round's client data
  (the pre-training step of --resample_every=once; None for round). step: a block of
  rounds, (state, clients, test, hparams, count) -> (state, RoundOutput [block, ...])."""
  prepare: Callable | None
  step: Callable


def compile_program(spec: round_lib.RoundSpec, block_rounds: int, resample_every: str, state,
                    clients, test, hparams, sweep: Callable | None = None) -> Program:
  """Compiles the run's programs for these arguments' shapes.

  sweep: for a sweep (leaves of state and hparams [S, ...]), builds the
  vmapped round from (round spec, in_axes of the clients: None, or 0 for
  prepared data, which has a leading S); None for a single run.
  """
  prepare, round_spec = None, spec
  if resample_every == 'once':
    if spec.local_update is not None:
      raise ConfigError('resample_every', 'once needs the standard client update (not latent '
                        'resampling); use --resample_every=round')
    fn = pretraining.make_prepare(spec)
    if sweep is not None:
      fn = jax.vmap(fn, in_axes=(None, 0),
                    spmd_axis_name=sharding.SWEEP if spec.mesh is not None else None)
    prepare = jax.jit(fn).lower(clients, hparams).compile(compiler_options())
    # The compiled step's output shardings, so the round takes its rows as they come.
    clients, round_spec = prepare.out_info, pretraining.round_spec(spec)
  round_fn = None if sweep is None else sweep(round_spec, None if prepare is None else 0)
  return Program(prepare, compile_rounds(round_spec, block_rounds, state, clients, test, hparams,
                                         round_fn))


def compile_rounds(spec: round_lib.RoundSpec, block_rounds: int, state, clients, test, hparams,
                   round_fn=None):
  """The compiled block of rounds (`round_lib.make_rounds`) for these arguments' shapes.

  Returns step(state, clients, test, hparams, count) -> (state, RoundOutput [block_rounds, ...]).
  """
  rounds = jax.jit(round_lib.make_rounds(spec, block_rounds, round_fn))
  return rounds.lower(state, clients, test, hparams, jnp.int32(0)).compile(compiler_options())


def compiler_options() -> dict:
  """XLA options for the run's programs. On CPU, XLA's classic fusion emitters instead
  of its MLIR ones: 0.37-0.96x the compile time; round time within this machine's
  noise (BUILD_NOTES, *Compile time*)."""
  return {'xla_cpu_use_fusion_emitters': False} if jax.default_backend() == 'cpu' else {}


def run_block(step, state, clients, test, hparams, count: int):
  """One call of the compiled block running `count` rounds.

  Returns (state, outputs on the device [block_rounds, ...], the first `count`
  outputs as NumPy [count, ...] fetched in one transfer, seconds).
  """
  t = time.perf_counter()
  state, device_outs = step(state, clients, test, hparams, jnp.int32(count))
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
  return build(cfg, mesh=mesh), mesh


def write_partition_summary(workdir: str, cfg: RunConfig, data: FederatedDataset) -> None:
  """Writes partition.{json,csv,png} for the real clients (single-process runs only)."""
  if jax.process_count() > 1:
    logging.info('multi-host run: no partition summary (each host holds only its clients)')
    return
  real = np.asarray(data.clients.client_id) < cfg.num_clients
  clients = federated.take_clients(data.clients, real)
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
    write_partition_summary(workdir, cfg, exp.data)
  rows = round_lib.data_rows(exp.spec, cfg.num_clients)
  clients = sharding.shard_clients(exp.data.clients, mesh, rows)
  test, state, hparams = sharding.replicate((exp.data.test, exp.state, exp.hparams), mesh)
  local_rows = exp.data.clients.x.shape[0]
  exp = exp._replace(data=exp.data._replace(clients=None))  # Free the host copy (GBs at scale).
  blocks, block_size = round_lib.slot_layout(exp.spec, cfg.num_clients)
  logging.info('data: %d clients (%d rows, %d here) x %d rows x %s features, %d classes; '
               'resampler %s (capacity %d rows); %s per round in %d block(s) of %d; %s',
               cfg.num_clients, rows, local_rows, *clients.x.shape[1:2],
               clients.x.shape[2:], exp.spec.num_classes, exp.spec.resampler.name,
               exp.spec.resampler.capacity, exp.spec.clients_per_round or 'all', blocks,
               block_size, device_description())
  writer_process = distributed.is_writer()

  ckpt_dir = os.path.join(workdir, 'checkpoints')
  times, last_metrics, done = [], None, checkpoint.latest_step(ckpt_dir)
  calls = round_lib.round_blocks(done, cfg.rounds, cfg.checkpoint_every)
  compile_s = 0.0
  if calls:  # A finished run compiles nothing.
    t0 = time.perf_counter()
    program = compile_program(exp.spec, block_length(cfg), cfg.resample_every, state, clients,
                              test, hparams)
    compile_s = time.perf_counter() - t0
    logging.info('compiled the round (%d rounds per call) in %.2fs', block_length(cfg),
                 compile_s)
    if program.prepare is not None:  # Resampled once; the rows stay on the device.
      clients = program.prepare(clients, hparams)

  if writer_process:
    workdir_lib.save_settings(workdir, 'config.json', cfg.to_dict())
  ckpt = checkpoint.Checkpoints(ckpt_dir, cfg.keep_checkpoints)
  if done:
    state, last_metrics = ckpt.restore(state)
    logging.info('resuming after round %d from %s', done, os.path.join(workdir, 'checkpoints'))
  header = csv_header(exp.data.class_names)
  f, writer = workdir_lib.open_rows(
      os.path.join(workdir, 'metrics.csv') if writer_process else None, header,
      keep=lambda row: int(row['round']) <= done)
  with f:
    for first, count in calls:
      state, device_outs, outs, seconds = run_block(program.step, state, clients, test, hparams,
                                                    count)
      for r, row in enumerate(csv_rows(first, outs, seconds / count), first):
        times.append(seconds / count)
        writer.writerow(row)
        eta = statistics.median(times) * (cfg.rounds - r)
        cell = dict(zip(header, row))
        logging.info('round %d/%d  acc %s  gmean %s  f1 %s  resampled %s/%d  dropped %s  %.3fs  '
                     'eta %.1fs', r, cfg.rounds, cell['accuracy'], cell['gmean'], cell['f1'],
                     cell['resampled_clients'], exp.spec.clients_per_round or cfg.num_clients,
                     cell['dropped_clients'], times[-1], eta)
      f.flush()
      last_metrics = jax.tree.map(lambda a: a[count - 1], device_outs.metrics)
      ckpt.save(state, last_metrics)

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
  return summary
