"""fedar-report over several workdirs (runs and sweeps) into one report (--out)."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fedar_jax import report_compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_HEADER = ['round', 'accuracy', 'sensitivity', 'specificity', 'precision', 'f1', 'gmean',
              'gmean_multiclass', 'recall_0', 'recall_1', 'resampled_clients',
              'dropped_clients', 'fallback_clients', 'mean_client_ir', 'train_loss', 'round_s']


def _run(workdir, resampler, gmeans):
  os.makedirs(workdir)
  with open(workdir / 'config.json', 'w') as f:
    json.dump({'resampler': resampler, 'threshold': 1.5, 'imbalance_ratio': 10.0, 'seed': 0,
               'dataset': 'synthetic', 'num_clients': 4}, f)
  with open(workdir / 'metrics.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(RUN_HEADER)
    for r, g in enumerate(gmeans, 1):
      writer.writerow([r] + [g] * 9 + [0, 0, 0, 10.0, 0.5, 0.01])


def _sweep(workdir, shift):
  """3 seeds x 2 thresholds, 2 rounds; returns the final G-means per threshold."""
  os.makedirs(workdir)
  header = ['imbalance_ratio', 'resampler', 'threshold', 'seed', 'learning_rate'] + RUN_HEADER
  final = {}
  with open(workdir / 'sweep.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for t in ('1', '3'):
      for seed in range(3):
        g = 0.6 + shift + 0.05 * seed + 0.1 * (t == '3')
        final.setdefault(t, []).append(g)
        for r in (1, 2):
          writer.writerow(['10', 'smote', t, seed, '0.001', r] + [g] * 9 + [0, 0, 0, 10, 0.5, 0.1])
  return final


def _report(*args):
  return subprocess.run([sys.executable, '-m', 'fedar_jax.report', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


def test_two_runs_in_one_report(tmp_path):
  _run(tmp_path / 'a' / 'smote', 'smote', [0.5, 0.7, 0.8])
  _run(tmp_path / 'b' / 'none', 'none', [0.5, 0.5, 0.6])
  paths = report_compare.write_comparison([str(tmp_path / 'a' / 'smote'),
                                           str(tmp_path / 'b' / 'none')], str(tmp_path / 'out'))
  with open(tmp_path / 'out' / 'compared.csv') as f:
    rows = list(csv.DictReader(f))
  got = [(r['run'], r['n_seeds'], r['rounds'], r['gmean_mean'], r['gmean_ci95']) for r in rows]
  assert got == [('smote', '1', '3', '0.800000', ''), ('none', '1', '3', '0.600000', '')]
  md = (tmp_path / 'out' / 'report.md').read_text()
  assert '| smote | `' in md and '| run | smote |' in md  # What differs: the resampler.
  # Every metric of these runs is the same number: one column, named by all, and a note.
  same = 'gmean = f1 = sensitivity = specificity = precision = accuracy'
  assert f'| input | seeds | rounds | {same} |' in md and '| smote | 1 | 3 | 0.8000 |' in md
  assert f'Identical for every input (one column): {same}.' in md
  names = sorted(os.path.basename(p) for p in paths)
  assert {'gmean_per_round.png', 'gmean_by_run.png', 'report.md'} <= set(names)
  for p in paths:
    assert os.path.getsize(p) > 0


def test_two_sweeps_get_intervals_over_seeds(tmp_path):
  a = _sweep(tmp_path / 'A', 0.0)
  _sweep(tmp_path / 'B', 0.05)
  report_compare.write_comparison([str(tmp_path / 'A'), str(tmp_path / 'B')],
                                  str(tmp_path / 'A' / 'vs_B'))  # Inside an input: allowed.
  with open(tmp_path / 'A' / 'vs_B' / 'compared.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['run'], r['threshold']) for r in rows] == [('A', '1'), ('A', '3'), ('B', '1'),
                                                        ('B', '3')]
  from scipy import stats
  v = np.array(a['3'])
  assert float(rows[1]['gmean_mean']) == pytest.approx(v.mean(), abs=1e-6)
  assert float(rows[1]['gmean_ci95']) == pytest.approx(
      stats.t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3), abs=1e-6)
  assert (tmp_path / 'A' / 'vs_B' / 'plots' / 'gmean_vs_threshold.png').exists()


def test_cli_flags_of_several_workdirs(tmp_path):
  _sweep(tmp_path / 'A', 0.0)
  _sweep(tmp_path / 'B', 0.05)
  proc = _report(f'--workdir={tmp_path / "A"}', f'--workdir={tmp_path / "B"}')
  assert proc.returncode == 2 and proc.stderr.startswith('error: --out: is required')
  proc = _report(f'--workdir={tmp_path / "A"}', f'--workdir={tmp_path / "B"}',
                 f'--out={tmp_path / "A"}')
  assert proc.returncode == 2 and proc.stderr.startswith('error: --out: ')
  assert len(proc.stderr.strip().splitlines()) == 1
  assert not (tmp_path / 'A' / 'report.md').exists()  # Nothing written.
  proc = _report(f'--workdir={tmp_path / "A"}', f'--out={tmp_path / "C"}')
  assert proc.returncode == 2 and 'two or more --workdir' in proc.stderr
  assert not (tmp_path / 'C').exists()
  proc = _report(f'--workdir={tmp_path / "A"}', f'--workdir={tmp_path / "B"}',
                 f'--out={tmp_path / "C"}')
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / 'C' / 'report.md').exists() and not (tmp_path / 'A' / 'report.md').exists()
  # One workdir: its own report, as before.
  proc = _report(f'--workdir={tmp_path / "A"}')
  assert proc.returncode == 0 and (tmp_path / 'A' / 'summary.csv').exists()
  assert not (tmp_path / 'A' / 'compared.csv').exists()
