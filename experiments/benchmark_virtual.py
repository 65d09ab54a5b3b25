"""Benchmark of a virtual population (target: 10^8 clients, cohorts of 1,000, peak RSS
<= 3 GiB), part of `experiments/benchmark.py --sections=population`.

Each measurement runs in a fresh process (peak RSS = its ru_maxrss, the JAX import
included): `virtual` samples `rounds` cohorts of a virtual population
(`sampling.sample_clients`, Floyd's algorithm above 2^20 clients), generates each
(`VirtualPopulation.cohort`) and puts it on the default device, as the streaming thread
does (the median cohort: the first pays the one-off imports); `in_memory`, the baseline
of the same run, generates a population of just the cohort's clients in memory
(`synthetic.synthetic_federated`, as many times, median) and puts it on the device.
A second record times whole `fedar-run`s: the virtual population (cohorts streamed) against
the cohort's 1,000 clients held in memory, all taking part (median seconds per round, peak
RSS of each process).

  python experiments/benchmark_virtual.py [--quick]   # these records alone
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r'''
import json, resource, sys, time
import jax, jax.numpy as jnp, numpy as np
from fedar_jax import sampling
from fedar_jax.data import synthetic, virtual_population
s = json.loads(sys.argv[1])
jax.devices()  # Backend start-up is not part of either figure.
t0 = time.perf_counter()
if s['mode'] == 'virtual':
  source = virtual_population.VirtualPopulation(0, s['clients'], s['rows'], 2, s['features'],
                                                10.0, 100)
  draw = jax.jit(sampling.sample_clients, static_argnums=(2, 3))
  sample_s, cohort_s = [], []
  for r in range(s['rounds']):
    t = time.perf_counter()
    ids = np.asarray(draw(jnp.int32(0), jnp.int32(r), s['clients'], s['cohort']))
    sample_s.append(time.perf_counter() - t)
    t = time.perf_counter()
    jax.block_until_ready(jax.device_put(source.cohort(ids)))
    cohort_s.append(time.perf_counter() - t)
  extra = {'sample_s_median': float(np.median(sample_s[1:] or sample_s)),
           'cohort_s_median': float(np.median(cohort_s))}
else:
  cohort_s = []
  for r in range(s['rounds']):
    t = time.perf_counter()
    clients, test = synthetic.synthetic_federated(r, s['cohort'], s['rows'], 2, s['features'],
                                                  10.0, 100)
    jax.block_until_ready(jax.device_put(clients))
    cohort_s.append(time.perf_counter() - t)
    del clients, test
  extra = {'cohort_s_median': float(np.median(cohort_s))}
print(json.dumps({'peak_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                  'seconds': time.perf_counter() - t0, **extra}))
'''


def measure(mode: str, clients: int, cohort: int, rows: int, features: int,
            rounds: int) -> dict:
  """One measurement in a fresh process: {'peak_rss_gib', 'seconds', ...}."""
  settings = dict(mode=mode, clients=clients, cohort=cohort, rows=rows, features=features,
                  rounds=rounds)
  proc = subprocess.run([sys.executable, '-c', CHILD, json.dumps(settings)],
                        capture_output=True, text=True, check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


RUN_CHILD = r'''
import atexit, json, resource, runpy, sys
atexit.register(lambda: print(json.dumps(
    {'peak_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20})))
sys.argv = ['fedar_jax.main'] + json.loads(sys.argv[1])
runpy.run_module('fedar_jax.main', run_name='__main__')
'''


def measure_run(workdir: str, flags: list) -> dict:
  """A `fedar-run` in a fresh process: {'peak_rss_gib', 'round_s' (median), 'compile_s'}."""
  argv = [f'--workdir={workdir}', '--compilation_cache_dir=', *flags]
  proc = subprocess.run([sys.executable, '-c', RUN_CHILD, json.dumps(argv)],
                        capture_output=True, text=True, check=True)
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  return {**json.loads(proc.stdout.strip().splitlines()[-1]),
          'round_s': summary['round_s'], 'compile_s': summary['compile_s']}


def run(args):
  """Yields one record: the virtual population's figures and the in-memory baseline's."""
  clients, cohort, rows, features = 10 ** 8, 1000, 32, 64
  rounds = 3 if args.quick else 10
  virtual = measure('virtual', clients, cohort, rows, features, rounds)
  baseline = measure('in_memory', cohort, cohort, rows, features, rounds)
  yield {'what': 'virtual_population', 'clients': clients, 'cohort': cohort, 'rows': rows,
         'features': features, 'rounds': rounds,
         'peak_rss_gib': round(virtual['peak_rss_gib'], 3), 'target_rss_gib': 3.0,
         'sample_s_median': round(virtual['sample_s_median'], 4),
         'cohort_s_median': round(virtual['cohort_s_median'], 4),
         'baseline': f'{cohort} clients held in memory',
         'baseline_peak_rss_gib': round(baseline['peak_rss_gib'], 3),
         'baseline_cohort_s_median': round(baseline['cohort_s_median'], 4)}
  # The whole run: fedar-run on the virtual population against the cohort's clients held in
  # memory (all of them taking part each round).
  flags = [f'--samples_per_client={rows}', f'--feature_dim={features}', '--local_epochs=1',
           f'--rounds={rounds}', f'--checkpoint_every={rounds}', f'--clients_per_round={cohort}']
  with tempfile.TemporaryDirectory() as tmp:
    virtual = measure_run(os.path.join(tmp, 'virtual'), [f'--num_clients={clients}', *flags])
    memory = measure_run(os.path.join(tmp, 'memory'), [f'--num_clients={cohort}', *flags])
  yield {'what': 'virtual_population_run', 'clients': clients, 'cohort': cohort, 'rows': rows,
         'features': features, 'rounds': rounds,
         'peak_rss_gib': round(virtual['peak_rss_gib'], 3), 'target_rss_gib': 3.0,
         'round_s': round(virtual['round_s'], 4), 'compile_s': round(virtual['compile_s'], 2),
         'baseline': f'fedar-run of {cohort} clients in memory',
         'baseline_peak_rss_gib': round(memory['peak_rss_gib'], 3),
         'baseline_round_s': round(memory['round_s'], 4),
         'round_ratio': round(virtual['round_s'] / memory['round_s'], 3)}


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='3 cohorts instead of 10')
  for record in run(parser.parse_args()):
    print(json.dumps({'section': 'population', **record}), flush=True)
