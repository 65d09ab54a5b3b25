import csv
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ['--num_clients=3', '--samples_per_client=22', '--feature_dim=8', '--rounds=2',
         '--test_per_class=10', '--local_epochs=1']


def run_cli(*args, module='fedar_jax.main'):
  return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


def test_cli_writes_metrics_and_summary(tmp_path):
  """A run on two CPU devices (--cpu_devices; results equal one device's to float32
  reordering, as test_sharding checks on 8) writes its metrics and summary."""
  workdir = tmp_path / 'run'
  proc = run_cli(f'--workdir={workdir}', *SMALL, '--num_classes=3', '--cpu_devices=2')
  assert proc.returncode == 0, proc.stderr
  with open(workdir / 'metrics.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['round'] for r in rows] == ['1', '2']
  assert list(rows[0])[:11] == ['round', 'accuracy', 'sensitivity', 'specificity', 'precision',
                                'f1', 'gmean', 'gmean_multiclass', 'recall_0', 'recall_1',
                                'recall_2']
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['config']['num_clients'] == 3
  assert summary['compile_s'] > 0 and summary['round_s'] > 0
  assert summary['device'].startswith('2 x cpu')
  assert summary['final']['gmean'] == pytest.approx(float(rows[-1]['gmean']), abs=1e-5)
  assert 'round 2/2' in proc.stderr


def test_flagfile(tmp_path):
  flagfile = tmp_path / 'f.flags'
  flagfile.write_text('\n'.join(SMALL + ['--resampler=random_over']))
  proc = run_cli(f'--flagfile={flagfile}', f'--workdir={tmp_path / "w"}')
  assert proc.returncode == 0, proc.stderr
  assert json.loads((tmp_path / 'w' / 'summary.json').read_text())['config'][
      'resampler'] == 'random_over'


@pytest.mark.parametrize('flag,pattern', [
    ('--resampler=bogus', '--resampler: unknown resampler'),
    ('--threshold=0.5', '--threshold: must be >= 1'),
    ('--num_clients=0', '--num_clients: must be >= 1'),
    ('--imbalance_ratio=0.2', '--imbalance_ratio: must be >= 1'),
    ('--samples_per_client=10', '--samples_per_client: 10 cannot hold'),
    ('--num_clients=many', 'num_clients'),
])
def test_bad_input_is_one_line_exit_2(tmp_path, flag, pattern):
  proc = run_cli(f'--workdir={tmp_path / "w"}', flag)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and pattern in lines[0], proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not (tmp_path / 'w').exists()


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / 'file'
  path.write_text('x')
  proc = run_cli(f'--workdir={path}')
  assert proc.returncode == 2 and '--workdir' in proc.stderr and 'not a directory' in proc.stderr
