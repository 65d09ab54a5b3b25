"""The driver: build the experiment, run the compiled round for every round, write the workdir.

Workdir contents:
  metrics.csv   one row per round (written and flushed as each round ends)
  summary.json  the config, final metrics, compile_s, round_s, device
  partition.*   per-client class counts and IRs (json, csv, png; data/summary.py)
"""
import csv
import json
import os
import statistics
import time
from typing import NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from fedar_jax import latent
from fedar_jax import metrics
from fedar_jax import models
from fedar_jax import resample
from fedar_jax import round as round_lib
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


def build(cfg: RunConfig, data: FederatedDataset | None = None) -> Experiment:
  """Creates data (unless given), model, resampler and initial global state for `cfg`.

  Raises:
    DataError: bad input data. ConfigError: flags that do not fit the data.
  """
  data = data or load_federated(cfg)
  num_classes = len(data.class_names)
  images = data.clients.x.ndim == 5
  if cfg.model == 'cnn' and not images:
    raise ConfigError('model', f'cnn needs images [N, H, W, ch]; the data has rows of shape '
                      f'{data.clients.x.shape[2:]}')
  sample = jnp.asarray(data.clients.x[0, :1])
  capacity = data.clients.x.shape[1]
  resampler = resample.make_resampler(
      cfg.resampler, num_classes=num_classes, capacity=capacity,
      max_class_count=federated.max_class_count(data.clients, num_classes),
      k_neighbors=cfg.k_neighbors)
  local_update = None
  if cfg.model == 'cnn':
    model = models.cnn(num_classes, cfg.hidden, cfg.latent_dim, cfg.cnn_channels)
    params = model.init(jax.random.key(cfg.seed), sample)
    if cfg.latent_resampling == 'none':
      resampler = _flat_resampler(resampler)
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
      resampler = _flat_resampler(resampler)
  spec = round_lib.RoundSpec(apply_fn, resampler, num_classes, cfg.local_epochs,
                             cfg.batch_size, local_update)
  return Experiment(spec, data, round_lib.ServerState(params, jnp.int32(0)),
                    round_lib.HParams.create(cfg.threshold, cfg.learning_rate, cfg.seed))


def _flat_resampler(r: resample.Resampler) -> resample.Resampler:
  """Runs `r` on rows flattened to vectors (pixel-space resampling of x[N, H, W, ch])."""
  def fn(key, x, y, mask):
    xs, ys, ms = r.fn(key, x.reshape(x.shape[0], -1), y, mask)
    return xs.reshape((xs.shape[0],) + x.shape[1:]), ys, ms
  return r._replace(fn=fn)


def csv_header(class_names) -> list[str]:
  return (['round', *metrics.METRIC_NAMES] + [f'recall_{n}' for n in class_names]
          + ['resampled_clients', 'mean_client_ir', 'train_loss', 'round_s'])


def csv_row(round_index: int, out: round_lib.RoundOutput, seconds: float) -> list:
  m = jax.device_get(out.metrics)
  stats = jax.device_get(out.clients)
  return ([round_index] + [f'{float(m[k]):.6f}' for k in metrics.METRIC_NAMES]
          + [f'{float(r):.6f}' for r in m['recall']]
          + [int(np.sum(stats.resampled)), f'{float(np.mean(stats.ir)):.4f}',
             f'{float(np.mean(stats.loss)):.6f}', f'{seconds:.4f}'])


def device_description() -> str:
  d = jax.devices()
  return f'{len(d)} x {d[0].platform}:{d[0].device_kind}'


def train_and_evaluate(cfg: RunConfig, workdir: str, exp: Experiment | None = None) -> dict:
  """Runs `cfg.rounds` FedAR rounds and writes metrics.csv and summary.json to `workdir`.

  `exp` is `build(cfg)` unless given. Returns the summary dict.
  """
  exp = exp or build(cfg)
  clients = jax.device_put(exp.data.clients)
  test = jax.device_put(exp.data.test)
  logging.info('data: %d clients x %d rows x %s features, %d classes; resampler %s '
               '(capacity %d rows)', *clients.x.shape[:2], clients.x.shape[2:],
               exp.spec.num_classes, exp.spec.resampler.name, exp.spec.resampler.capacity)

  t0 = time.perf_counter()
  step = jax.jit(round_lib.make_round(exp.spec)).lower(exp.state, clients, test,
                                                        exp.hparams).compile()
  compile_s = time.perf_counter() - t0
  logging.info('compiled the round in %.2fs', compile_s)

  os.makedirs(workdir, exist_ok=True)
  data_summary.write_partition_summary(workdir, exp.data)
  state, times, last = exp.state, [], None
  with open(os.path.join(workdir, 'metrics.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(csv_header(exp.data.class_names))
    for r in range(1, cfg.rounds + 1):
      t = time.perf_counter()
      state, out = step(state, clients, test, exp.hparams)
      jax.block_until_ready(out)
      times.append(time.perf_counter() - t)
      last = out
      row = csv_row(r, out, times[-1])
      writer.writerow(row)
      f.flush()
      eta = statistics.median(times) * (cfg.rounds - r)
      logging.info('round %d/%d  acc %s  gmean %s  f1 %s  resampled %s/%d  %.3fs  eta %.1fs',
                   r, cfg.rounds, row[1], row[6], row[5], row[-4], clients.x.shape[0],
                   times[-1], eta)

  final = {k: float(v) for k, v in jax.device_get(last.metrics).items() if np.ndim(v) == 0}
  final['recall'] = {n: float(v) for n, v in zip(exp.data.class_names,
                                                 jax.device_get(last.metrics['recall']))}
  summary = {
      'config': cfg.to_dict(),
      'final': final,
      'confusion': np.asarray(last.metrics['confusion']).tolist(),
      'compile_s': compile_s,
      'round_s': statistics.median(times),
      'device': device_description(),
  }
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  return summary
