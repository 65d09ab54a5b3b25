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
from typing import NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from fedar_jax import checkpoint
from fedar_jax import distributed
from fedar_jax import latent
from fedar_jax import metrics
from fedar_jax import models
from fedar_jax import precision
from fedar_jax import resample
from fedar_jax import round as round_lib
from fedar_jax import sampling
from fedar_jax import sharding
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import ConfigError, RunConfig
from fedar_jax.data import federated
from fedar_jax.data import standardize as standardize_lib
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
  # Scaling comes before everything else, so resampling sees the scaled rows.
  data = standardize_lib.standardize(data, cfg.standardize, distributed.global_sum)
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
        pretrain = precision.with_matmul_precision(latent.pretrain, cfg.matmul_precision)
        params = pretrain(model, params, jax.random.key(cfg.seed + 1),
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
                         local_update=local_update, matmul_precision=cfg.matmul_precision)
  return Experiment(spec, data, round_lib.ServerState(params, jnp.int32(0)),
                    round_lib.HParams.create(cfg.threshold, cfg.learning_rate, cfg.seed))


def csv_header(class_names) -> list[str]:
  return (['round', *metrics.METRIC_NAMES] + [f'recall_{n}' for n in class_names]
          + ['resampled_clients', 'dropped_clients', 'fallback_clients', 'mean_client_ir',
             'train_loss', 'round_s'])


def csv_row(round_index: int, out: round_lib.RoundOutput, seconds: float) -> list:
  """One metrics.csv row; client statistics over the round's participating clients."""
  out = sharding.fetch(out)
  m, stats = out.metrics, out.clients
  if out.client_index is not None:  # Leave out padding slots.
    stats = jax.tree.map(lambda a: a[out.client_index >= 0], stats)
  return ([round_index] + [f'{float(m[k]):.6f}' for k in metrics.METRIC_NAMES]
          + [f'{float(r):.6f}' for r in m['recall']]
          + [int(np.sum(stats.resampled)), int(m.get('dropped_clients', 0)),
             int(np.sum(stats.fallback)), f'{float(np.mean(stats.ir)):.4f}',
             f'{float(np.mean(stats.loss)):.6f}', f'{seconds:.4f}'])


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

  t0 = time.perf_counter()
  step = jax.jit(round_lib.make_round(exp.spec)).lower(state, clients, test,
                                                        hparams).compile()
  compile_s = time.perf_counter() - t0
  logging.info('compiled the round in %.2fs', compile_s)

  if writer_process:
    workdir_lib.save_settings(workdir, 'config.json', cfg.to_dict())
  ckpt = checkpoint.Checkpoints(os.path.join(workdir, 'checkpoints'), cfg.keep_checkpoints)
  times, last_metrics, done = [], None, ckpt.latest_step()
  if done:
    like = jax.eval_shape(round_lib.make_round(exp.spec), state, clients, test, hparams)
    state, last_metrics = ckpt.restore(state, like[1].metrics)
    logging.info('resuming after round %d from %s', done, os.path.join(workdir, 'checkpoints'))
  header = csv_header(exp.data.class_names)
  f, writer = workdir_lib.open_rows(
      os.path.join(workdir, 'metrics.csv') if writer_process else None, header,
      keep=lambda row: int(row['round']) <= done)
  with f:
    for r in range(done + 1, cfg.rounds + 1):
      t = time.perf_counter()
      state, out = step(state, clients, test, hparams)
      jax.block_until_ready(out)
      times.append(time.perf_counter() - t)
      last_metrics = out.metrics
      row = csv_row(r, out, times[-1])
      writer.writerow(row)
      f.flush()
      if r % cfg.checkpoint_every == 0 or r == cfg.rounds:
        ckpt.save(state, out.metrics)
      eta = statistics.median(times) * (cfg.rounds - r)
      cell = dict(zip(header, row))
      logging.info('round %d/%d  acc %s  gmean %s  f1 %s  resampled %s/%d  dropped %s  %.3fs  '
                   'eta %.1fs', r, cfg.rounds, cell['accuracy'], cell['gmean'], cell['f1'],
                   cell['resampled_clients'], exp.spec.clients_per_round or cfg.num_clients,
                   cell['dropped_clients'], times[-1], eta)

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
