"""Two processes on 127.0.0.1 (jax.distributed, gloo CPU collectives) give one process's results."""
import csv
import os
import socket
import subprocess
import sys

import numpy as np

from fedar_jax import sweep_axes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ['--num_clients=5', '--samples_per_client=30', '--feature_dim=8', '--rounds=3',
         '--test_per_class=40', '--local_epochs=1', '--learning_rate=0.05',
         '--clients_per_round=4', '--client_block=2']


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def command(workdir, *extra):
  return [sys.executable, '-m', 'fedar_jax.main', f'--workdir={workdir}', *FLAGS, *extra]


def read_rows(path):
  with open(path) as f:
    return [{k: v for k, v in row.items() if k != 'round_s'} for row in csv.DictReader(f)]


def _two_processes(command_of, env, timeout):
  """Runs command_of(0) and command_of(1) at once; both must exit 0. Returns their
  (stdout, stderr)."""
  procs = [subprocess.Popen(command_of(i), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:
    outs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def test_two_processes_equal_one_process(tmp_path):
  # Under DP (clipping, noise from (seed, round)): the weighted FedAvg path of two processes
  # is test_two_process_sweep_equals_one_process's.
  extra = ('--dp=fixed', '--dp_noise_multiplier=0.5', '--dp_clip_norm=0.5')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_CPU_COLLECTIVES_IMPLEMENTATION'] = 'gloo'
  address = f'127.0.0.1:{free_port()}'
  outs = _two_processes(lambda i: command(tmp_path / 'multi', f'--coordinator_address={address}',
                                          '--num_processes=2', f'--process_id={i}', *extra),
                        env, 400)
  for _, err in outs:
    # 5 clients padded to 6 rows (a multiple of 2 devices): each process generated its 3.
    assert '5 clients (6 rows, 3 here)' in err and '2 x cpu' in err and '2 processes' in err, err
  single = subprocess.run(command(tmp_path / 'single', *extra), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
  assert single.returncode == 0, single.stderr[-3000:]
  multi, one = read_rows(tmp_path / 'multi' / 'metrics.csv'), read_rows(
      tmp_path / 'single' / 'metrics.csv')
  assert len(multi) == len(one) == 3
  for a, b in zip(multi, one):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([float(v) for v in a.values()], [float(v) for v in b.values()],
                               atol=2e-5, rtol=0)
  assert all(row['dropped_clients'] == '0' and row['resampled_clients'] == '4' for row in one)
  # The model did train: the loss moves between rounds; DP spends epsilon.
  assert len({row['train_loss'] for row in one}) == 3
  assert all(row['epsilon'] != 'inf' for row in one)


SWEEP_FLAGS = ['--num_clients=3', '--samples_per_client=30', '--feature_dim=8', '--rounds=2',
               '--test_per_class=20', '--local_epochs=1', '--learning_rate=0.05',
               '--imbalance_ratios=2,4', '--thresholds=1,5', '--checkpoint_every=1']


def test_two_process_sweep_equals_one_process(tmp_path):
  # 2 stacked data sets x 2 thresholds on 2 processes of one CPU device each: the data
  # sets are sharded over the processes (SWEEP axis), process 0 writes the workdir.
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_CPU_COLLECTIVES_IMPLEMENTATION'] = 'gloo'
  address = f'127.0.0.1:{free_port()}'
  sweep = lambda workdir, *extra: [sys.executable, '-m', 'fedar_jax.sweep',
                                   f'--workdir={workdir}', *SWEEP_FLAGS, *extra]
  outs = _two_processes(lambda i: sweep(tmp_path / 'multi', f'--coordinator_address={address}',
                                        '--num_processes=2', f'--process_id={i}'), env, 500)
  assert 'wrote' in outs[0][0] and 'wrote' not in outs[1][0]
  single = subprocess.run(sweep(tmp_path / 'single'), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=500)
  assert single.returncode == 0, single.stderr[-3000:]
  multi, one = (read_rows(tmp_path / w / 'sweep.csv') for w in ('multi', 'single'))
  assert len(multi) == len(one) == 2 * 2 * 2
  for a, b in zip(multi, one):
    assert a.keys() == b.keys()
    names = [k for k in a if k in sweep_axes.SETTING_COLUMNS or k == 'round']
    assert [a[k] for k in names] == [b[k] for k in names]
    metrics = [k for k in a if k not in names and k != 'round_s']  # round_s: timing.
    np.testing.assert_allclose([float(a[k]) for k in metrics], [float(b[k]) for k in metrics],
                               atol=2e-5, rtol=0)
  assert (tmp_path / 'multi' / 'report.md').exists()
