"""Records a handful of small runs and sweeps, or compares them with a recording.

Used around refactors that must not change behaviour: record before the first
move, compare after each one.

  python experiments/behaviour_check.py --record=/tmp/behaviour_before
  python experiments/behaviour_check.py --compare=/tmp/behaviour_before [--out=DIR]

Each case is a `fedar-run` or `fedar-sweep` command on small shapes; the CSV
outputs (metrics.csv, sweep.csv, summary.csv, partition.csv) are compared cell
by cell, every column of the recording but the timing ones (`round_s`, `compile_s`;
columns a newer version appends after the recorded ones are not compared). Exits 1
when anything differs, naming the case, file, row and column.
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import time

BASE = ['--num_clients=4', '--samples_per_client=40', '--rounds=3', '--local_epochs=1',
        '--test_per_class=50', '--feature_dim=16', '--checkpoint_every=2']

CASES = {
    'run_default': ('main', BASE),
    'run_methods': ('main', BASE + ['--aggregator=trimmed_mean', '--trim_fraction=0.2',
                                    '--server_optimizer=fedadam', '--loss=focal',
                                    '--client_optimizer=momentum', '--prox_mu=0.01']),
    'run_attack': ('main', BASE + ['--num_clients=8', '--attacker_fraction=0.25',
                                   '--attack=scale', '--aggregator=median']),
    'run_every_round': ('main', BASE + ['--resample_every=round',
                                        '--resampler=borderline_smote1']),
    'run_sampling': ('main', BASE + ['--num_clients=9', '--clients_per_round=4',
                                     '--client_block=2', '--resampler=smote_enn']),
    'run_krum_loss': ('main', BASE + ['--aggregator=krum', '--byzantine_clients=0',
                                      '--loss=logit_adjusted', '--server_optimizer=fedyogi']),
    'sweep_small': ('sweep', BASE + ['--thresholds=1,3', '--seeds=0,1',
                                     '--imbalance_ratios=2,10', '--resamplers=smote,none']),
    'sweep_methods': ('sweep', BASE + ['--aggregators=mean,norm_clip', '--clip_norms=0.5,2',
                                       '--losses=ce,fedlc', '--server_learning_rates=0.5,1']),
    'sweep_attack': ('sweep', BASE + ['--num_clients=8', '--attacker_fractions=0,0.25',
                                      '--attacks=skew,label_flip',
                                      '--defences=none,fedar_1.5']),
}
TIMING = {'round_s', 'compile_s'}
FILES = ('metrics.csv', 'sweep.csv', 'summary.csv', 'partition.csv')


def run_case(name: str, out: str) -> float:
  module, flags = CASES[name]
  workdir = os.path.join(out, name)
  shutil.rmtree(workdir, ignore_errors=True)
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, '-m', f'fedar_jax.{module}', f'--workdir={workdir}',
                         '--compilation_cache_dir='] + flags,
                        capture_output=True, text=True)
  if proc.returncode:
    sys.exit(f'{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}')
  return time.perf_counter() - start


def read(path: str) -> list[dict]:
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def compare(name: str, before: str, after: str) -> list[str]:
  diffs = []
  for file in FILES:
    a, b = os.path.join(before, name, file), os.path.join(after, name, file)
    if not os.path.exists(a) and not os.path.exists(b):
      continue
    if os.path.exists(a) != os.path.exists(b):
      diffs.append(f'{name}/{file}: present in only one')
      continue
    rows_a, rows_b = read(a), read(b)
    if len(rows_a) != len(rows_b):
      diffs.append(f'{name}/{file}: {len(rows_a)} rows vs {len(rows_b)}')
      continue
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
      # Columns added at the end of the rows since the recording are not compared.
      if list(rb)[:len(ra)] != list(ra):
        diffs.append(f'{name}/{file}: columns differ: {list(ra)} vs {list(rb)}')
        break
      for col in ra:
        if col not in TIMING and ra[col] != rb[col]:
          diffs.append(f'{name}/{file} row {i + 1} {col}: {ra[col]} vs {rb[col]}')
  return diffs


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  group = parser.add_mutually_exclusive_group(required=True)
  group.add_argument('--record', help='directory to write the recording to')
  group.add_argument('--compare', help='a recording to compare a fresh one with')
  parser.add_argument('--cases', default=','.join(CASES), help='comma-separated case names')
  parser.add_argument('--out', default='', help='where --compare writes its fresh runs '
                      '(default: the recording\'s path + "_after")')
  args = parser.parse_args()
  names = [n for n in args.cases.split(',') if n]
  unknown = [n for n in names if n not in CASES]
  if unknown:
    parser.error(f'unknown cases {unknown}; known: {", ".join(CASES)}')
  out = args.record or args.out or args.compare.rstrip('/') + '_after'
  os.makedirs(out, exist_ok=True)
  failed = []
  for name in names:
    seconds = run_case(name, out)
    if args.compare:
      diffs = compare(name, args.compare, out)
      failed += diffs
      print(f'{name}: {"same" if not diffs else f"{len(diffs)} differences"} ({seconds:.1f} s)',
            flush=True)
    else:
      print(f'{name}: recorded ({seconds:.1f} s)', flush=True)
  for line in failed[:50]:
    print(line)
  sys.exit(1 if failed else 0)


if __name__ == '__main__':
  main()
