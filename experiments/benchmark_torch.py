"""Benchmark section `torch`: the round in the paper's own stack beside fedar_jax's, one run.

  pip install -e '.[compare]'   # torch 2.13.0 (CPU build), imbalanced-learn, scikit-learn
  python experiments/benchmark.py --sections=torch [--round_clients=100]
      [--round_resample=round|once] [--round_repeats=3] [--cpu_devices=1,0] [--quick]

FedAR's authors ran Flower with PyTorch clients that resample with imbalanced-learn. Each
Flower client's `fit` is a loop like this one: SMOTE (`imblearn.over_sampling.SMOTE`,
k_neighbors 5) on the client's rows where its imbalance ratio is above the threshold,
then the MLP (Linear 432 -> 10, ReLU, Linear 10 -> 2) trained from the global weights
with a fresh Adam (lr 1e-3) for 5 epochs of shuffled minibatches of 32; the server
averages the weights by the clients' real row counts (NumPy) and scores the global
model on the test rows. This section times that loop over C clients, one client after
the other in one process (PyTorch's default threads), on the very rows fedar_jax's
paper workload draws (experiments/workload.py, `train.build`), and, interleaved with
it, whole `fedar_jax.main` processes of the same workload with each --cpu_devices
value (section `cpu_devices`'s runner). With --round_resample=once each client's rows
are resampled once before the timed rounds (cached, as fedar_jax's
`--resample_every=once`); with round, inside every round.

Flower itself (its server, the gRPC messages, the simulation's actors) is not run: its
clients run this loop, so the loop's round time is a lower bound on the Flower stack's,
and each `speedup` printed (loop seconds / fedar_jax seconds) a lower bound on fedar_jax's
speedup over it. Without torch the section prints one record saying what to install.
"""
import importlib.util
import statistics
import tempfile
import time

import numpy as np

import benchmark_cpu_devices
import workload
from fedar_jax import train


def _loop_parts():
  """(torch, SMOTE), imported here: the section's only need of them."""
  import torch
  from imblearn.over_sampling import SMOTE
  return torch, SMOTE


def _client_rows(exp, cfg, smote, seed: int):
  """Each client's real rows as (x float32[n, D], y int64[n], real rows n_real),
  SMOTE-resampled where its imbalance ratio is above --threshold (k_neighbors 5, fewer
  where the minority class has 5 rows or fewer), with random_state seed + client."""
  clients = exp.data.clients
  x, y, mask = (np.asarray(clients.x), np.asarray(clients.y), np.asarray(clients.mask))
  rows = []
  for c in range(x.shape[0]):
    xc, yc = x[c][mask[c]], y[c][mask[c]].astype(np.int64)
    counts = np.bincount(yc, minlength=exp.spec.num_classes)
    n_real = len(yc)
    # Fewer minority rows than k + 1: k shrinks, as fedar_jax's SMOTE falls back.
    neighbours = min(5, counts.min() - 1)
    if neighbours >= 1 and counts.max() / counts.min() > cfg.threshold:
      xc, yc = smote(k_neighbors=neighbours, random_state=seed + c).fit_resample(xc, yc)
    rows.append((xc.astype(np.float32), yc.astype(np.int64), n_real))
  return rows


def _model(torch, cfg, d: int, k: int, weights):
  """The MLP (Linear d -> hidden, ReLU, Linear hidden -> k) holding `weights`."""
  (h,) = cfg.hidden
  model = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, k))
  with torch.no_grad():
    for p, w in zip(model.parameters(), weights):
      p.copy_(torch.from_numpy(w))
  return model


def _round(torch, exp, cfg, global_weights, rows, seed: int) -> list:
  """One round of the per-client loop over `rows` (`_client_rows`'s); returns the
  averaged weights (NumPy arrays, PyTorch's layout)."""
  d, k = exp.data.clients.x.shape[-1], exp.spec.num_classes
  sums, total = [np.zeros_like(w) for w in global_weights], 0
  generator = torch.Generator().manual_seed(seed)
  for x, y, n_real in rows:
    model = _model(torch, cfg, d, k, global_weights)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(cfg.local_epochs):
      order = torch.randperm(len(yt), generator=generator)
      for i in range(0, len(yt), cfg.batch_size):
        idx = order[i:i + cfg.batch_size]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
        opt.step()
    for s, p in zip(sums, model.parameters()):
      s += n_real * p.detach().numpy()
    total += n_real
  new = [s / total for s in sums]
  with torch.no_grad():  # The global model scored on the test rows.
    _model(torch, cfg, d, k, new)(torch.from_numpy(np.asarray(exp.data.test.x))).argmax(1)
  return new


def run(args):
  if importlib.util.find_spec('torch') is None or importlib.util.find_spec('imblearn') is None:
    yield {'skipped': "torch or imbalanced-learn is not installed: pip install -e '.[compare]'"}
    return
  torch, smote = _loop_parts()
  sizes = (10,) if args.quick else tuple(int(c) for c in (args.round_clients or '100').split(','))
  once = args.round_resample == 'once'
  repeats = args.round_repeats or (1 if args.quick else 3)
  counts = [int(v) for v in (args.cpu_devices or '1,0').split(',')]
  for c in sizes:
    cfg = workload.config(args.quick, num_clients=c)
    exp = train.build(cfg)
    d, k = exp.data.clients.x.shape[-1], exp.spec.num_classes
    torch.manual_seed(0)
    weights = [p.detach().numpy().copy()
               for p in _model(torch, cfg, d, k, []).parameters()]  # PyTorch's init.
    cached = _client_rows(exp, cfg, smote, 0) if once else None

    def rows_of(r):  # Inside the timed round where every round resamples.
      return cached if once else _client_rows(exp, cfg, smote, 1000 * r)

    weights = _round(torch, exp, cfg, weights, rows_of(0), 0)  # Warm-up round.
    loop_s, engine = [], {n: [] for n in counts}
    flags = workload.flags(args.quick, num_clients=c, rounds=benchmark_cpu_devices.ROUNDS,
                           resample_every='once' if once else 'round')
    with tempfile.TemporaryDirectory() as tmp:
      for r in range(1, repeats + 1):  # Interleaved: the machine's load falls on all alike.
        t = time.perf_counter()
        weights = _round(torch, exp, cfg, weights, rows_of(r), r)
        loop_s.append(time.perf_counter() - t)
        for n in counts:
          run_ = benchmark_cpu_devices._run(flags + [f'--cpu_devices={n}'], f'{tmp}/{n}_{r}')
          engine[n].append(run_['summary']['round_s'])
    loop = statistics.median(loop_s)
    yield {'clients': c, 'stack': 'pytorch+imbalanced-learn loop', 'torch': torch.__version__,
           'torch_threads': torch.get_num_threads(), 'resample': 'once' if once else 'round',
           'round_s': round(loop, 4), 'round_s_all': [round(t, 4) for t in loop_s]}
    for n in counts:
      round_s = statistics.median(engine[n])
      yield {'clients': c, 'stack': 'fedar_jax', 'cpu_devices': n,
             'resample': 'once' if once else 'round', 'round_s': round(round_s, 4),
             'speedup': round(loop / round_s, 1),
             'round_s_all': [round(t, 4) for t in engine[n]]}
