"""Benchmark: populations larger than one round's cohort.

Streamed cohorts: rounds of a cohort of `--cohort` clients (default 1,000; --quick
40) sampled from a population of `--population_clients` (default 20,000; --quick
400) synthetic clients x 32 rows x 64 features, streamed (cohort_stream.py:
each round's cohort read while the last round runs) against the same run with
the whole population held in memory (--clients_per_round, the same metrics),
and against the cohort alone held in memory (an in-memory population of the
cohort's size, every client every round: the same compiled round). Each run is
a fresh process (its own peak RSS); the streamed one reads its cohorts from an
InMemorySource (the population in host memory: its RSS includes the
population), and prints its median round_s, peak_rss_gib and the ratio of
round_s to each baseline's.

  python experiments/benchmark.py --sections=population [--quick]
"""
import json
import subprocess
import sys

CHILD = '''
import json, resource, sys, tempfile
from fedar_jax import config, loop
from fedar_jax.data import load
from fedar_jax.data.cohort_source import InMemorySource
cfg = config.validate(config.RunConfig(**json.loads(sys.argv[1])))
source = None
if sys.argv[2] == 'stream':
  source = InMemorySource(load.load_federated(cfg.replace(seed=cfg.effective_data_seed)))
with tempfile.TemporaryDirectory() as workdir:
  summary = loop.train_and_evaluate(cfg, workdir, source=source)
print('RESULT ' + json.dumps({
    'compile_s': round(summary['compile_s'], 2), 'round_s': round(summary['round_s'], 4),
    'peak_rss_gib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    'gmean': round(summary['final']['gmean'], 4), 'device': summary['device']}))
'''


def run_child(settings: dict, mode: str) -> dict:
  """One run (mode 'stream' or 'memory') in a fresh Python process; its RESULT dict."""
  proc = subprocess.run([sys.executable, '-c', CHILD, json.dumps(settings), mode],
                        capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f'{mode} {settings}: {proc.stderr[-2000:]}')
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')][-1]
  return json.loads(line[len('RESULT '):])


def streamed_rounds(args):
  """Streamed cohorts against the population and the cohort held in memory."""
  quick = args.quick
  population, cohort = (400, 40) if quick else (20_000, 1_000)
  shape = dict(samples_per_client=32, feature_dim=64, test_per_class=500, rounds=6,
               local_epochs=1, checkpoint_every=100)
  sampled = dict(num_clients=population, clients_per_round=cohort, **shape)
  stream = run_child(sampled, 'stream')
  memory = run_child(sampled, 'memory')
  alone = run_child(dict(num_clients=cohort, **shape), 'memory')
  base = {'population': population, 'cohort': cohort, 'rows': 32, 'features': 64,
          'source': 'InMemorySource'}
  yield {**base, 'run': 'streamed', **stream,
         'vs_population_in_memory': round(stream['round_s'] / memory['round_s'], 3),
         'vs_cohort_in_memory': round(stream['round_s'] / alone['round_s'], 3)}
  yield {**base, 'run': 'population in memory (--clients_per_round)', **memory}
  yield {**base, 'run': 'cohort alone in memory', **alone}


def run(args):
  yield from streamed_rounds(args)
