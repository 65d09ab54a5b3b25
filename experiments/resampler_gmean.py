"""Downstream check: final G-mean of a short federated run for every resampler,
inside the compiled round vs imbalanced-learn applied per client before training.

Both columns use the same synthetic IR-10 workload, model, seed and rounds.
`fedar_jax`: the sampler runs inside every round behind the FedAR gate
(threshold 1.5; every client has IR 10, so every client resamples, with fresh
randomness each round). `imblearn`: the seed paper's way: each client's data is
resampled once with imbalanced-learn before training, then plain FedAvg rounds
(resampler 'none'); a client where imbalanced-learn raises keeps its data.

  python experiments/resampler_gmean.py [--rounds=5] [--samplers=smote,enn]
"""
import argparse
import sys
import warnings

import jax
import numpy as np

from benchmark_resamplers import IMBLEARN
from fedar_jax import fedar_round
from fedar_jax import train
from fedar_jax.config import RunConfig
from fedar_jax.data import federated
from fedar_jax.data.load import FederatedDataset, load_federated


def final_gmean(cfg, data):
  exp = train.build(cfg, data)
  step = jax.jit(fedar_round.make_round(exp.spec))
  state = exp.state
  for _ in range(cfg.rounds):
    state, out = step(state, exp.data.clients, exp.data.test, exp.hparams)
  return float(out.metrics['gmean']), int(np.sum(out.clients.fallback))


def imblearn_per_client(name, data):
  c = data.clients
  xs, ys, raised = [], [], 0
  for i in range(c.x.shape[0]):
    m = np.asarray(c.mask[i])
    x, y = np.asarray(c.x[i])[m], np.asarray(c.y[i])[m]
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        x, y = IMBLEARN[name]().fit_resample(x, y)
    except (ValueError, RuntimeError):
      raised += 1
    xs.append(np.asarray(x, np.float32))
    ys.append(np.asarray(y, np.int32))
  return FederatedDataset(federated.stack_clients(xs, ys), data.test, data.class_names), raised


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--clients', type=int, default=10)
  parser.add_argument('--local_epochs', type=int, default=2)
  parser.add_argument('--samplers', default=','.join(IMBLEARN))
  args = parser.parse_args()
  unknown = [n for n in args.samplers.split(',') if n not in IMBLEARN]
  if unknown:
    print(f'--samplers: unknown {", ".join(unknown)}; known: {", ".join(IMBLEARN)}',
          file=sys.stderr)
    sys.exit(2)
  cfg = RunConfig(num_clients=args.clients, rounds=args.rounds, local_epochs=args.local_epochs,
                  imbalance_ratio=10.0, threshold=1.5, test_per_class=500)
  data = load_federated(cfg)
  base, _ = final_gmean(cfg.replace(resampler='none'), data)
  print(f'workload: {args.clients} clients x {cfg.samples_per_client} rows x '
        f'{cfg.feature_dim} features, IR 10, {args.rounds} rounds x {args.local_epochs} '
        f'local epochs, MLP(10), threshold 1.5, seed 0; no resampling: G-mean {base:.4f}')
  print('| sampler | G-mean fedar_jax (in round) | G-mean imbalanced-learn (before training) '
        '| fallback clients (last round) | clients where imbalanced-learn raised |')
  print('|---|---|---|---|---|')
  for name in args.samplers.split(','):
    ours, fallback = final_gmean(cfg.replace(resampler=name), data)
    pre, raised = imblearn_per_client(name, data)
    theirs, _ = final_gmean(cfg.replace(resampler='none'), pre)
    print(f'| {name} | {ours:.4f} | {theirs:.4f} | {fallback} | {raised} |', flush=True)


if __name__ == '__main__':
  main()
