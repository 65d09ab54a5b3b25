"""Benchmark section `torch`: the round in the paper's own stack beside fedar_jax's, one run.

  pip install -e '.[compare]'   # torch 2.13.0 (CPU build), imbalanced-learn, scikit-learn
  python experiments/benchmark.py --sections=torch [--round_clients=100]
      [--round_resample=round|once] [--round_repeats=3] [--cpu_devices=1,0]
      [--torch_workers=W] [--flower_python=FLOWER_VENV/bin/python] [--quick]

FedAR's authors ran Flower with PyTorch clients that resample with imbalanced-learn. Each
Flower client's `fit` does what `_fit` does here: SMOTE (`imblearn.over_sampling.SMOTE`,
k_neighbors 5) on the client's rows where its imbalance ratio is above the threshold,
then the MLP (Linear 432 -> 10, ReLU, Linear 10 -> 2) trained from the global weights
with a fresh Adam (lr 1e-3) for 5 epochs of shuffled minibatches of 32. Flower's
simulation runs clients in parallel, one single-threaded worker per core; so does this
section: --torch_workers processes (default: one per core), each with one PyTorch thread
and all clients' rows loaded once, take the round's clients in turn; the server
averages the weights by the clients' real row counts (NumPy) and scores the global model
on the test rows. The rows are the very ones fedar_jax's paper workload draws
(experiments/workload.py, `train.build`). Interleaved with the rounds, whole
`fedar_jax.main` processes of the same workload run with each --cpu_devices value
(section `cpu_devices`'s runner). With --round_resample=once each client's rows are
resampled once before the timed rounds (kept, as fedar_jax's `--resample_every=once`);
with round, by the client inside every round.

These workers are Flower's clients without Flower (its server, messages, actors), so
their round time is a lower bound on the Flower stack's. With --flower_python (a Python
with `flwr[simulation]==1.42.0`, torch, imbalanced-learn and NumPy, in a venv of its own:
Flower's pins do not fit the project's), the same rows also go through Flower's own
simulation (experiments/flower_round.py: Ray actors of one CPU, FedAvg, --round_repeats
timed rounds after a warm-up round), and its rounds are printed beside the others. Each
`speedup` is that stack's seconds per round over fedar_jax's (medians). Without torch the
section prints one record saying what to install.
"""
import concurrent.futures
import importlib.util
import json
import multiprocessing
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np

import benchmark_cpu_devices
import workload
from fedar_jax import platforms
from fedar_jax import train

_WORKER = {}  # A worker process's clients and settings (`_start_worker`).


def _client_rows(x, y, mask, num_classes: int, threshold: float, seed: int, resample: bool):
  """Each client's real rows as (x float32[n, D], y int64[n], real rows n_real); with
  `resample`, SMOTE-resampled where its imbalance ratio is above `threshold` (k_neighbors
  5, fewer where the minority class has 5 rows or fewer, as fedar_jax's SMOTE falls
  back), with random_state seed + client."""
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


def _model(torch, sizes: tuple[int, int, int], weights):
  """The MLP (Linear d -> h, ReLU, Linear h -> k) holding `weights` (PyTorch's layout)."""
  d, h, k = sizes
  model = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, k))
  with torch.no_grad():
    for p, w in zip(model.parameters(), weights):
      p.copy_(torch.from_numpy(w))
  return model


def _start_worker(rows, settings: dict) -> None:
  """A worker's start: one PyTorch thread; the clients' rows (prepared once, or raw where
  they resample in the round) and the training settings kept for `_fit`."""
  import torch
  torch.set_num_threads(1)
  _WORKER.update(rows=rows, **settings)


def _fit(client: int, weights, seed: int):
  """One client's fit in a worker: resample (where the round does), train, and return
  (real rows, new weights)."""
  import torch
  w = _WORKER
  x, y, n_real = w['rows'][client]
  if w['resample_in_round']:
    (x, y, n_real), = _client_rows(x[None], y[None], np.ones((1, len(y)), bool),
                                   w['sizes'][2], w['threshold'], seed - client, True)
  model = _model(torch, w['sizes'], weights)
  opt = torch.optim.Adam(model.parameters(), lr=w['learning_rate'])
  generator = torch.Generator().manual_seed(seed)
  xt, yt = torch.from_numpy(x), torch.from_numpy(y)
  for _ in range(w['epochs']):
    order = torch.randperm(len(yt), generator=generator)
    for i in range(0, len(yt), w['batch']):
      idx = order[i:i + w['batch']]
      opt.zero_grad()
      torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
      opt.step()
  return n_real, [p.detach().numpy() for p in model.parameters()]


def _round(pool, torch, sizes, weights, clients: int, test_x, seed: int) -> list:
  """One round: every client's `_fit` on the pool, the weighted average, the test scores."""
  jobs = [pool.submit(_fit, c, weights, seed + c) for c in range(clients)]
  sums, total = [np.zeros_like(w) for w in weights], 0
  for job in jobs:
    n_real, new = job.result()
    for s, p in zip(sums, new):
      s += n_real * p
    total += n_real
  average = [s / total for s in sums]
  with torch.no_grad():
    _model(torch, sizes, average)(torch.from_numpy(test_x)).argmax(1)
  return average


def _flower_rounds(python: str, exp, cfg, tmp: str, rounds: int, once: bool) -> dict:
  """experiments/flower_round.py under `python` on the workload's rows; its JSON record."""
  path = os.path.join(tmp, 'rows.npz')
  clients = exp.data.clients
  np.savez(path, x=np.asarray(clients.x), y=np.asarray(clients.y),
           mask=np.asarray(clients.mask), test_x=np.asarray(exp.data.test.x),
           threshold=cfg.threshold, learning_rate=cfg.learning_rate,
           local_epochs=cfg.local_epochs, batch_size=cfg.batch_size, hidden=cfg.hidden[0],
           num_classes=exp.spec.num_classes)
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'flower_round.py')
  proc = subprocess.run([python, script, f'--data={path}', f'--rounds={rounds + 1}',
                         f'--resample={"once" if once else "round"}'],
                        capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f'{script}: {proc.stderr.strip().splitlines()[-1:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args):
  if importlib.util.find_spec('torch') is None or importlib.util.find_spec('imblearn') is None:
    yield {'skipped': "torch or imbalanced-learn is not installed: pip install -e '.[compare]'"}
    return
  import torch
  sizes_c = (10,) if args.quick else tuple(int(c) for c in (args.round_clients or '100').split(','))
  once = args.round_resample == 'once'
  repeats = args.round_repeats or (1 if args.quick else 3)
  counts = [int(v) for v in (args.cpu_devices or '1,0').split(',')]
  workers = args.torch_workers or platforms.cpu_cores()
  for c in sizes_c:
    cfg = workload.config(args.quick, num_clients=c)
    exp = train.build(cfg)
    clients = exp.data.clients
    x, y, mask = np.asarray(clients.x), np.asarray(clients.y), np.asarray(clients.mask)
    sizes = (x.shape[-1], cfg.hidden[0], exp.spec.num_classes)
    rows = _client_rows(x, y, mask, sizes[2], cfg.threshold, 0, once)
    torch.manual_seed(0)
    weights = [p.detach().numpy().copy() for p in _model(torch, sizes, []).parameters()]
    settings = dict(sizes=sizes, threshold=cfg.threshold, learning_rate=cfg.learning_rate,
                    epochs=cfg.local_epochs, batch=cfg.batch_size, resample_in_round=not once)
    test_x = np.asarray(exp.data.test.x, np.float32)
    flags = workload.flags(args.quick, num_clients=c, rounds=benchmark_cpu_devices.ROUNDS,
                           resample_every='once' if once else 'round')
    loop_s, engine = [], {n: [] for n in counts}
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context('spawn'), initializer=_start_worker,
        initargs=(rows, settings)) as pool, tempfile.TemporaryDirectory() as tmp:
      weights = _round(pool, torch, sizes, weights, c, test_x, 0)  # Warm-up round.
      for r in range(1, repeats + 1):  # Interleaved: the machine's load falls on all alike.
        t = time.perf_counter()
        weights = _round(pool, torch, sizes, weights, c, test_x, 1000 * r)
        loop_s.append(time.perf_counter() - t)
        for n in counts:
          run_ = benchmark_cpu_devices._run(flags + [f'--cpu_devices={n}'], f'{tmp}/{n}_{r}')
          engine[n].append(run_['summary']['round_s'])
      flower = (_flower_rounds(args.flower_python, exp, cfg, tmp, repeats, once)
                if args.flower_python else None)
    loop = statistics.median(loop_s)
    resample = 'once' if once else 'round'
    stacks = {'pytorch+imbalanced-learn': loop}
    yield {'clients': c, 'stack': 'pytorch+imbalanced-learn', 'torch': torch.__version__,
           'workers': workers, 'threads_per_worker': 1, 'resample': resample,
           'round_s': round(loop, 4), 'round_s_all': [round(t, 4) for t in loop_s]}
    if flower is not None:
      stacks['flower'] = statistics.median(flower['round_s_all'][1:])
      yield {'clients': c, 'stack': 'flower+pytorch+imbalanced-learn', 'flwr': flower['flwr'],
             'resample': resample, 'round_s': round(stacks['flower'], 4),
             'round_s_all': flower['round_s_all'], 'startup_s': flower['startup_s']}
    for n in counts:
      round_s = statistics.median(engine[n])
      yield {'clients': c, 'stack': 'fedar_jax', 'cpu_devices': n, 'resample': resample,
             'round_s': round(round_s, 4),
             **{f'speedup_vs_{name}': round(s / round_s, 1) for name, s in stacks.items()},
             'round_s_all': [round(t, 4) for t in engine[n]]}
