"""Benchmark (b): seconds per round and peak memory for C = 10 ... 10,000 clients with --client_block.

Each client count runs in a fresh process (so its peak resident memory is its
own): the embedded synthetic default at the paper's shapes (N = 200 samples x
D = 432 features per client, 2 classes, IR 10, SMOTE), clients processed in
blocks of `--client_block`. Reports compile_s, round_s (median over rounds)
and peak_rss_gib (ru_maxrss of the run, data generation included) next to the
size of the client features alone (data_gib).

  python experiments/benchmark.py --sections=scale [--quick]
"""
import json
import subprocess
import sys

CHILD = '''
import json, resource, sys, tempfile
from fedar_jax import config, loop
cfg = config.validate(config.RunConfig(**json.loads(sys.argv[1])))
with tempfile.TemporaryDirectory() as workdir:
  summary = loop.train_and_evaluate(cfg, workdir)
print('RESULT ' + json.dumps({
    'compile_s': round(summary['compile_s'], 2), 'round_s': round(summary['round_s'], 3),
    'peak_rss_gib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    'gmean': round(summary['final']['gmean'], 4), 'device': summary['device']}))
'''


def run_config(settings: dict, env=None) -> dict:
  """Runs one RunConfig (as a dict) in a fresh Python process; returns its RESULT dict."""
  proc = subprocess.run([sys.executable, '-c', CHILD, json.dumps(settings)],
                        capture_output=True, text=True, env=env)
  if proc.returncode:
    raise RuntimeError(f'{settings}: {proc.stderr[-2000:]}')
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')][-1]
  return json.loads(line[len('RESULT '):])


def run(args):
  if args.quick:
    counts, block, shape = (10, 40), 16, dict(samples_per_client=40, feature_dim=16)
  else:
    counts, block, shape = (10, 100, 1000, 10000), 500, dict(samples_per_client=200,
                                                             feature_dim=432)
  # The largest count below 10,000 once more without blocks: what blocking saves.
  runs = [(c, block) for c in counts] + [(counts[-2], 0)]
  for c, b in runs:
    settings = dict(num_clients=c, client_block=b, rounds=2, local_epochs=1,
                    test_per_class=500, **shape)
    data_gib = c * shape['samples_per_client'] * shape['feature_dim'] * 4 / 2**30
    yield {'clients': c, 'client_block': b, **shape, 'local_epochs': 1,
           'data_gib': round(data_gib, 3), **run_config(settings)}
