"""The driver: build the experiment, run the compiled round for every round, write the workdir.

Workdir contents:
  metrics.csv   one row per round (written and flushed as each round ends)
  summary.json  the config, final metrics, compile_s, round_s, device
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

from fedar_jax import metrics
from fedar_jax import models
from fedar_jax import resample
from fedar_jax import round as round_lib
from fedar_jax.config import RunConfig
from fedar_jax.data import federated
from fedar_jax.data.load import FederatedDataset, load_federated


class Experiment(NamedTuple):
  """A built run: the static round spec, data, initial state and traced hyperparameters."""
  spec: round_lib.RoundSpec
  data: FederatedDataset
  state: round_lib.ServerState
  hparams: round_lib.HParams


def build(cfg: RunConfig, data: FederatedDataset | None = None) -> Experiment:
  """Creates data (unless given), model, resampler and initial global state for `cfg`."""
  data = data or load_federated(cfg)
  num_classes = len(data.class_names)
  model = models.MLP(num_classes=num_classes, hidden=tuple(cfg.hidden))
  params = model.init(jax.random.key(cfg.seed), jnp.asarray(data.clients.x[0, :1]))
  resampler = resample.make_resampler(
      cfg.resampler, num_classes=num_classes, capacity=data.clients.x.shape[1],
      max_class_count=federated.max_class_count(data.clients, num_classes),
      **{name: getattr(cfg, name) for name in resample.OPTION_NAMES})
  spec = round_lib.RoundSpec(model.apply, resampler, num_classes, cfg.local_epochs,
                             cfg.batch_size)
  return Experiment(spec, data, round_lib.ServerState(params, jnp.int32(0)),
                    round_lib.HParams.create(cfg.threshold, cfg.learning_rate, cfg.seed))


def csv_header(class_names) -> list[str]:
  return (['round', *metrics.METRIC_NAMES] + [f'recall_{n}' for n in class_names]
          + ['resampled_clients', 'mean_client_ir', 'train_loss', 'round_s', 'fallback_clients'])


def csv_row(round_index: int, out: round_lib.RoundOutput, seconds: float) -> list:
  m = jax.device_get(out.metrics)
  stats = jax.device_get(out.clients)
  return ([round_index] + [f'{float(m[k]):.6f}' for k in metrics.METRIC_NAMES]
          + [f'{float(r):.6f}' for r in m['recall']]
          + [int(np.sum(stats.resampled)), f'{float(np.mean(stats.ir)):.4f}',
             f'{float(np.mean(stats.loss)):.6f}', f'{seconds:.4f}',
             int(np.sum(stats.fallback))])


def device_description() -> str:
  d = jax.devices()
  return f'{len(d)} x {d[0].platform}:{d[0].device_kind}'


def train_and_evaluate(cfg: RunConfig, workdir: str) -> dict:
  """Runs `cfg.rounds` FedAR rounds and writes metrics.csv and summary.json to `workdir`.

  Returns the summary dict.
  """
  exp = build(cfg)
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
                   r, cfg.rounds, row[1], row[6], row[5], row[-5], clients.x.shape[0],
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
