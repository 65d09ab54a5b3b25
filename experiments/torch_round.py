"""The paper workload's rounds as PyTorch + imbalanced-learn clients, without Flower.

  COMPARE_PYTHON experiments/torch_round.py --data=ROWS.npz [--rounds=4] [--resample=once]
      [--workers=W]

Run by `python experiments/benchmark.py --sections=torch --compare_python=COMPARE_PYTHON`,
which writes ROWS.npz (as for experiments/flower_round.py). COMPARE_PYTHON is a venv of its
own with torch 2.13.0 (the CPU build), imbalanced-learn and NumPy: not the project's, where
tensorboardX would import torch into every run. Each client does what a Flower client's
`fit` does: SMOTE (`imblearn.over_sampling.SMOTE`, k_neighbors 5, fewer where the minority
class has 5 rows or fewer, as fedar_jax's SMOTE falls back) where its imbalance ratio is
above the threshold, every round or, with --resample=once, once before the rounds; then
the MLP (Linear D -> hidden, ReLU, Linear hidden -> K) trained from the global weights
with a fresh Adam for the epochs of shuffled minibatches. --workers processes (default:
one per core), each with one PyTorch thread and the clients' rows loaded once, take the
round's clients in turn, as Flower's simulation runs clients on one-CPU actors; the
weights are averaged by the clients' real row counts (NumPy) and the global model scores
the test rows. Prints one JSON line: each round's seconds (the first warms the workers).
"""
import argparse
import concurrent.futures
import json
import multiprocessing
import os
import time

import numpy as np

_WORKER = {}  # A worker process's clients and settings (`_start_worker`).


def client_rows(x, y, mask, num_classes: int, threshold: float, seed: int, resample: bool):
  """Each client's real rows as (x float32[n, D], y int64[n], real rows n_real); with
  `resample`, SMOTE-resampled where its imbalance ratio is above `threshold`, with
  random_state seed + client."""
  from imblearn.over_sampling import SMOTE
  rows = []
  for c in range(x.shape[0]):
    xc, yc = x[c][mask[c]].astype(np.float32), y[c][mask[c]].astype(np.int64)
    n_real = len(yc)
    counts = np.bincount(yc, minlength=num_classes)
    neighbours = min(5, counts.min() - 1)
    if resample and neighbours >= 1 and counts.max() / counts.min() > threshold:
      xc, yc = SMOTE(k_neighbors=neighbours, random_state=seed + c).fit_resample(xc, yc)
    rows.append((xc.astype(np.float32), yc.astype(np.int64), n_real))
  return rows


def model_of(torch, sizes: tuple[int, int, int], weights):
  """The MLP (Linear d -> h, ReLU, Linear h -> k) holding `weights` (PyTorch's layout)."""
  d, h, k = sizes
  model = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, k))
  with torch.no_grad():
    for p, w in zip(model.parameters(), weights):
      p.copy_(torch.from_numpy(np.asarray(w, np.float32)))
  return model


def train_client(torch, sizes: tuple[int, int, int], weights, x, y, settings: dict,
                 generator=None) -> list:
  """A client's local training (a Flower client's `fit`): the MLP from `weights`, a fresh
  Adam at settings['learning_rate'], settings['epochs'] passes over (x, y) in shuffled
  minibatches of settings['batch']; returns the new weights (NumPy, PyTorch's layout)."""
  model = model_of(torch, sizes, weights)
  opt = torch.optim.Adam(model.parameters(), lr=settings['learning_rate'])
  xt, yt = torch.from_numpy(x), torch.from_numpy(y)
  for _ in range(settings['epochs']):
    order = torch.randperm(len(yt), generator=generator)
    for i in range(0, len(yt), settings['batch']):
      idx = order[i:i + settings['batch']]
      opt.zero_grad()
      torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
      opt.step()
  return [p.detach().numpy() for p in model.parameters()]


def arguments(description: str) -> argparse.ArgumentParser:
  """The options both stacks' scripts take (--data, --rounds, --resample)."""
  parser = argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data', required=True)
  parser.add_argument('--rounds', type=int, default=4)
  parser.add_argument('--resample', choices=('once', 'round'), default='round')
  return parser


def load(path: str) -> dict:
  """ROWS.npz (`benchmark_torch.write_rows`): x, y, mask, test_x (float32) as arrays, and
  the settings: sizes (D, hidden, K), threshold and `train_client`'s learning_rate,
  epochs, batch."""
  data = dict(np.load(path))
  return dict(x=data['x'], y=data['y'], mask=data['mask'],
              test_x=data['test_x'].astype(np.float32),
              sizes=(data['x'].shape[-1], int(data['hidden']), int(data['num_classes'])),
              threshold=float(data['threshold']), learning_rate=float(data['learning_rate']),
              epochs=int(data['local_epochs']), batch=int(data['batch_size']))


def _start_worker(rows, settings: dict) -> None:
  import torch
  torch.set_num_threads(1)
  _WORKER.update(rows=rows, **settings)


def _fit(client: int, weights, seed: int):
  """One client's fit in a worker: resample (where the round does), train; returns
  (real rows, new weights)."""
  import torch
  w = _WORKER
  x, y, n_real = w['rows'][client]
  if w['resample_in_round']:
    (x, y, n_real), = client_rows(x[None], y[None], np.ones((1, len(y)), bool),
                                  w['sizes'][2], w['threshold'], seed - client, True)
  generator = torch.Generator().manual_seed(seed)
  return n_real, train_client(torch, w['sizes'], weights, x, y, w, generator)


def _round(pool, torch, sizes, weights, clients: int, test_x, seed: int) -> list:
  jobs = [pool.submit(_fit, c, weights, seed + c) for c in range(clients)]
  sums, total = [np.zeros_like(w) for w in weights], 0
  for job in jobs:
    n_real, new = job.result()
    for s, p in zip(sums, new):
      s += n_real * p
    total += n_real
  average = [s / total for s in sums]
  with torch.no_grad():
    model_of(torch, sizes, average)(torch.from_numpy(test_x)).argmax(1)
  return average


def main():
  parser = arguments(__doc__)
  parser.add_argument('--workers', type=int, default=0)
  args = parser.parse_args()
  import torch
  data = load(args.data)
  x, sizes = data['x'], data['sizes']
  once = args.resample == 'once'
  rows = client_rows(x, data['y'], data['mask'], sizes[2], data['threshold'], 0, once)
  torch.manual_seed(0)
  weights = [p.detach().numpy().copy() for p in model_of(torch, sizes, []).parameters()]
  settings = {key: data[key] for key in ('sizes', 'threshold', 'learning_rate', 'epochs',
                                         'batch')}
  settings['resample_in_round'] = not once
  workers = args.workers or len(os.sched_getaffinity(0))
  test_x = data['test_x']
  seconds = []
  with concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context('spawn'), initializer=_start_worker,
      initargs=(rows, settings)) as pool:
    for r in range(args.rounds):
      t = time.perf_counter()
      weights = _round(pool, torch, sizes, weights, x.shape[0], test_x, 1000 * r)
      seconds.append(round(time.perf_counter() - t, 4))
  print(json.dumps({'torch': torch.__version__, 'workers': workers, 'threads_per_worker': 1,
                    'clients': x.shape[0], 'resample': args.resample, 'round_s_all': seconds}))


if __name__ == '__main__':
  main()
