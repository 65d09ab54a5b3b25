"""Benchmark section `data`: start-up cost of the synthetic data set.

Times `synthetic.synthetic_federated` for 10,000 clients x 220 rows x 432 dims
(2 classes, IR 10; --quick: 500 clients) in wall, user and system seconds
(system time is mostly the first touch of the 3.8 GB array), and
the generator it replaced (a per-client float64 `rng.normal` loop, kept here
only as the timing reference) on a subset of clients, extrapolated linearly
to the same count in the same run.
"""
import resource
import time

import numpy as np

import workload
from fedar_jax.data import synthetic

ROWS, DIMS, CLASSES, RATIO = (workload.PAPER[k] for k in (
    'samples_per_client', 'feature_dim', 'num_classes', 'imbalance_ratio'))


def cpu_seconds() -> np.ndarray:
  """Process [user, system] CPU seconds (system: mostly first-touch page faults here)."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return np.array([r.ru_utime, r.ru_stime])


def earlier_generator(seed: int, num_clients: int) -> np.ndarray:
  """The synthetic clients' features as generated before issue 8 (timing reference)."""
  problem = synthetic.make_problem(seed, CLASSES, DIMS)
  counts = synthetic.imbalanced_counts(ROWS, CLASSES, RATIO)
  labels = np.repeat(np.arange(CLASSES), counts)
  x = np.empty((num_clients, ROWS, DIMS), np.float32)
  modes, latent = problem.centers.shape[1:]
  for c in range(num_clients):
    rng = np.random.default_rng([seed, 1, c])
    y = rng.permutation(labels)
    z = problem.centers[y, rng.integers(0, modes, ROWS)] + rng.normal(size=(ROWS, latent))
    x[c] = z @ problem.embedding + problem.noise * rng.normal(size=(ROWS, DIMS))
  return x


def timed(fn, *args):
  t, c = time.perf_counter(), cpu_seconds()
  fn(*args)
  return time.perf_counter() - t, cpu_seconds() - c


def run(args):
  clients = 500 if args.quick else 10_000
  ref = 20 if args.quick else 300
  wall, cpu = timed(synthetic.synthetic_federated, 0, clients, ROWS, CLASSES, DIMS, RATIO, 100)
  ref_wall, ref_cpu = timed(earlier_generator, 0, ref)
  scale = clients / ref
  yield {'what': 'synthetic_data', 'clients': clients, 'rows': ROWS, 'dims': DIMS,
         'seconds': round(wall, 2), 'user_s': round(cpu[0], 2), 'system_s': round(cpu[1], 2),
         'earlier_timed_clients': ref,
         'earlier_seconds_extrapolated': round(ref_wall * scale, 2),
         'earlier_user_s_extrapolated': round(ref_cpu[0] * scale, 2),
         'earlier_system_s_extrapolated': round(ref_cpu[1] * scale, 2),
         'speedup': round(ref_wall * scale / wall, 1),
         'user_speedup': round(ref_cpu[0] * scale / cpu[0], 1)}
