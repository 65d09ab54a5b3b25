"""Benchmark section `population`: writing an on-disk population and gathering cohorts.

Writes a synthetic population of 1,000,000 clients x 32 rows x 64 features
(2 classes, IR 10, float32; --quick: 20,000 clients) with `fedar-population`
(`python -m fedar_jax.population`, a child process: its wall and CPU seconds,
peak RSS and bytes written, and the 1-minute load average after it: the machine
is shared), next to the baseline of the same run: the same clients drawn in
memory by `synthetic.synthetic_federated` (timed on --population_baseline
clients, extrapolated linearly). Then gathers 5 random cohorts of 1,000 clients
from the population (`population_store.open(...).cohort`), each from a cold page
cache (posix_fadvise DONTNEED on the shards) and again warm, next to the same
cohort taken from the in-memory clients. The population is written under
--population_dir (default: a temporary directory) and removed afterwards.

Then streams rounds from it (`streamed_rounds`): `fedar-run --population=DIR
--clients_per_round=1,000` (cohort_stream.py: each round's cohort read while the
last round runs) next to the same cohort held in memory: an in-memory population
of 1,000 clients with the population's data flags, every client every round (the
same compiled round), 10 rounds of default local training, each run a fresh
process, the two interleaved --population_repeats times (the machine is shared:
medians, with the load average before each run). Per run: the median round_s of
rounds 2-10, the wall and CPU seconds per round from the end of round 1 to the end
of the last round (the driver's work between calls included), and the peak RSS.
Both resample once (--resample_every=once: the streamed round prepares each
cohort as it arrives, the in-memory run prepares its clients once) and again
with --resample_every=round (both prepare every round). With
--population_reuse a complete population already at the path is streamed as it
is (its write is not timed).

Last, the virtual population of 10^8 clients (`benchmark_virtual.py`): cohorts of
1,000 sampled and generated, and a whole `fedar-run` over it, against the cohort's
clients held in memory.
"""
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import statistics
import time
import json

import numpy as np

import benchmark_virtual
from fedar_jax.data import population_store
from fedar_jax.data import synthetic
from fedar_jax.data.errors import DataError

ROWS, DIMS, CLASSES, RATIO, COHORT = 32, 64, 2, 10.0, 1000
FLAGS = [f'--samples_per_client={ROWS}', f'--feature_dim={DIMS}', f'--num_classes={CLASSES}',
         f'--imbalance_ratio={RATIO:g}', '--test_per_class=100']


def _cpu_seconds() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def _drop_cache(store) -> None:
  """Asks the kernel to forget the shards' cached pages (a cold read)."""
  for fd in store._x_files + store._y_files:  # pylint: disable=protected-access
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _gather_times(store, rng, repeats=5):
  cold, warm = [], []
  for _ in range(repeats):
    ids = rng.choice(store.num_clients, COHORT, replace=False)
    _drop_cache(store)
    t = time.perf_counter()
    store.cohort(ids)
    cold.append(time.perf_counter() - t)
    t = time.perf_counter()
    store.cohort(ids)
    warm.append(time.perf_counter() - t)
  return float(np.median(cold)), float(np.median(warm))


def written_population(args, out: str, clients: int):
  """Writes the population to `out` (fedar-population) and gathers cohorts from it."""
  base_clients = min(clients, args.population_baseline or (4_000 if args.quick else 131_072))
  shutil.rmtree(out, ignore_errors=True)
  shutil.rmtree(out + '.partial', ignore_errors=True)
  command = [sys.executable, '-m', 'fedar_jax.population', f'--out={out}',
             f'--num_clients={clients}'] + FLAGS
  t = time.perf_counter()
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  write_s = time.perf_counter() - t
  child = resource.getrusage(resource.RUSAGE_CHILDREN)
  write_rss, write_cpu = child.ru_maxrss / 2**20, child.ru_utime + child.ru_stime
  t, cpu = time.perf_counter(), _cpu_seconds()
  mem, _ = synthetic.synthetic_federated(0, clients, ROWS, CLASSES, DIMS, RATIO, 100,
                                         range(base_clients))
  scale = clients / base_clients
  base_s, base_cpu = (time.perf_counter() - t) * scale, (_cpu_seconds() - cpu) * scale
  store = population_store.open(out)
  meta = store.metadata
  yield {'what': 'population_write', 'clients': clients, 'rows': ROWS, 'dims': DIMS,
         'dtype': meta['storage_dtype'], 'seconds': round(write_s, 1),
         'cpu_s': round(write_cpu, 1), 'load_average': round(os.getloadavg()[0], 1),
         'gb_written': round(meta['shard_bytes'] / 1e9, 2), 'shards': meta['num_shards'],
         'peak_rss_gib': round(write_rss, 2),
         'in_memory_timed_clients': base_clients,
         'in_memory_seconds_extrapolated': round(base_s, 1),
         'in_memory_cpu_s_extrapolated': round(base_cpu, 1),
         'command': ' '.join(['python'] + command[1:])}
  rng = np.random.default_rng(0)
  cold, warm = _gather_times(store, rng)
  ids = rng.choice(base_clients, COHORT, replace=False)
  t = time.perf_counter()
  for _ in range(5):
    np.take(mem.x, ids, axis=0), np.take(mem.y, ids, axis=0), np.take(mem.mask, ids, axis=0)
  in_memory_ms = (time.perf_counter() - t) / 5 * 1e3
  yield {'what': 'population_gather', 'clients': clients, 'cohort': COHORT,
         'cold_ms': round(cold * 1e3, 1), 'warm_ms': round(warm * 1e3, 1),
         'in_memory_take_ms': round(in_memory_ms, 1)}
  store.close()


CHILD = '''
import json, resource, sys, time
from fedar_jax import loop, main
marks = []
run_block = loop.run_block
def timed_block(*args):
  out = run_block(*args)
  marks.append((time.perf_counter(), time.process_time(), int(args[-1])))
  return out
loop.run_block = timed_block
sys.argv = ['fedar-run'] + json.loads(sys.argv[1])
try:
  main.run()
except SystemExit as e:
  if e.code:
    raise
(t0, c0, _), (t1, c1, _) = marks[0], marks[-1]
rounds = max(1, sum(m[2] for m in marks[1:]))
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print('RUN ' + json.dumps({'wall_per_round': (t1 - t0) / rounds,
                           'cpu_per_round': (c1 - c0) / rounds, 'peak_rss_gib': rss}))
'''


def fedar_run(flags: list, workdir: str) -> dict:
  """`fedar-run` with `flags` in a fresh process: the median round_s of rounds 2+, wall and
  CPU seconds per round after round 1, compile seconds, peak RSS, final G-mean."""
  shutil.rmtree(workdir, ignore_errors=True)
  proc = subprocess.run([sys.executable, '-c', CHILD, json.dumps(flags + [
      f'--workdir={workdir}'])], capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f'{flags}: {proc.stderr[-2000:]}')
  run = json.loads([l for l in proc.stdout.splitlines() if l.startswith('RUN ')][-1][4:])
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, 'metrics.csv')) as f:
    round_s = [float(row['round_s']) for row in csv.DictReader(f)][1:]
  shutil.rmtree(workdir, ignore_errors=True)
  return {'round_s': round(statistics.median(round_s), 4),
          'wall_per_round': round(run['wall_per_round'], 4),
          'cpu_per_round': round(run['cpu_per_round'], 4),
          'compile_s': round(summary['compile_s'], 2),
          'peak_rss_gib': round(run['peak_rss_gib'], 3),
          'gmean': round(summary['final']['gmean'], 4)}


def _medians(runs: list[dict]) -> dict:
  return {k: round(statistics.median(r[k] for r in runs), 4) for k in runs[0]}


def streamed_rounds(args, out: str, clients: int):
  """Rounds of a cohort streamed from the population at `out`, and the same cohort held
  in memory (module doc)."""
  built = population_store.read_metadata(out)['flags']
  data = [f'--{k}={built[k]:g}' if isinstance(built[k], float) else f'--{k}={built[k]}'
          for k in ('samples_per_client', 'feature_dim', 'num_classes', 'imbalance_ratio',
                    'test_per_class')]
  rounds = ['--rounds=10', '--checkpoint_every=100']
  repeats = args.population_repeats or (1 if args.quick else 3)
  for every in ('once', 'round'):
    stream_flags = [f'--population={out}', f'--clients_per_round={COHORT}',
                    f'--resample_every={every}'] + rounds
    memory_flags = [f'--num_clients={COHORT}', f'--resample_every={every}'] + data + rounds
    runs, loads = {'streamed': [], 'cohort_in_memory': []}, []
    for _ in range(repeats):  # Interleaved: both see the same load.
      for name, flags in (('streamed', stream_flags), ('cohort_in_memory', memory_flags)):
        loads.append(os.getloadavg()[0])
        runs[name].append(fedar_run(flags, out + '.run'))
    stream, memory = _medians(runs['streamed']), _medians(runs['cohort_in_memory'])
    yield {'what': 'population_rounds', 'clients': clients, 'cohort': COHORT,
           'resample_every': every, 'repeats': repeats, 'streamed': stream,
           'cohort_in_memory': memory,
           'ratio': {k: round(stream[k] / memory[k], 3)
                     for k in ('round_s', 'wall_per_round', 'cpu_per_round')},
           'load_average': [round(min(loads), 1), round(max(loads), 1)],
           'runs': runs,
           'command': ' '.join(['fedar-run'] + stream_flags)}


def _reusable(out: str) -> bool:
  """Whether `out` holds a complete population (--population_reuse)."""
  try:
    population_store.read_metadata(out)
  except DataError:
    return False
  return True


def run(args):
  clients = 20_000 if args.quick else 1_000_000
  root = args.population_dir or tempfile.mkdtemp(prefix='fedar_population_')
  out = os.path.join(root, f'synthetic_{clients}')
  try:
    if not (args.population_reuse and _reusable(out)):
      yield from written_population(args, out, clients)
    yield from streamed_rounds(args, out, clients)
    yield from benchmark_virtual.run(args)  # The virtual population of 10^8 clients.
  finally:
    if not (args.population_keep or args.population_reuse):
      shutil.rmtree(out, ignore_errors=True)
      if not args.population_dir:
        shutil.rmtree(root, ignore_errors=True)
