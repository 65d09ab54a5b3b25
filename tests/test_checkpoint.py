"""Checkpoints, resume and the workdir guard: unit tests plus a SIGKILL-and-resume subprocess test."""
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import checkpoint
from fedar_jax import fedar_round
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import ConfigError, RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small, but the metrics move every round (a resume from a wrong state would show).
RUN = ['--num_clients=3', '--samples_per_client=40', '--feature_dim=8', '--test_per_class=30',
       '--local_epochs=2', '--learning_rate=0.02', '--num_classes=3', '--imbalance_ratio=4',
       '--threshold=2']


def _state(value, shape=(3, 2)):
  params = {'params': {'w': jnp.full(shape, value, jnp.float32), 'b': jnp.arange(2.0) + value}}
  return fedar_round.ServerState(params, jnp.int32(value))


def test_checkpoints_round_trip_and_keep_the_newest(tmp_path):
  ckpt = checkpoint.Checkpoints(str(tmp_path / 'c'), keep=2)
  assert ckpt.latest_step() == 0
  metrics = {'gmean': jnp.float32(0.0), 'recall': jnp.zeros(3)}
  for step in (1, 2, 3):
    ckpt.save(_state(step), {'gmean': jnp.float32(step / 10), 'recall': jnp.full(3, step)})
  assert ckpt.latest_step() == 3
  assert sorted(os.listdir(tmp_path / 'c')) == ['2', '3']
  state, restored = ckpt.restore(_state(0), metrics)
  ckpt.close()
  jax.tree.map(np.testing.assert_array_equal, state, _state(3))
  assert float(restored['gmean']) == pytest.approx(0.3)
  np.testing.assert_array_equal(restored['recall'], np.full(3, 3.0))
  assert checkpoint.latest_step(str(tmp_path / 'c')) == 3
  assert checkpoint.latest_step(str(tmp_path / 'missing')) == 0


def test_open_rows_keeps_only_checkpointed_rows_and_appends(tmp_path):
  path = str(tmp_path / 'm.csv')
  header = ['round', 'x']
  f, writer = workdir_lib.open_rows(path, header, keep=lambda row: True)
  writer.writerows([[1, 'a'], [2, 'b'], [3, 'c']])
  f.write('4,d-partial-line-with,too,many')  # A line cut by a kill.
  f.close()
  f, writer = workdir_lib.open_rows(path, header, keep=lambda row: int(row['round']) <= 2)
  writer.writerow([3, 'C'])
  f.close()
  with open(path) as f:
    assert list(csv.reader(f)) == [header, ['1', 'a'], ['2', 'b'], ['3', 'C']]
  with pytest.raises(ConfigError, match='--workdir: .* other columns'):
    workdir_lib.open_rows(path, ['round', 'y'], keep=lambda row: True)


def test_check_resume_names_the_changed_flag(tmp_path):
  cfg = RunConfig()
  workdir_lib.check_resume(str(tmp_path), 'config.json', cfg.to_dict())  # Nothing stored yet.
  workdir_lib.save_settings(str(tmp_path), 'config.json', cfg.to_dict())
  workdir_lib.check_resume(str(tmp_path), 'config.json', cfg.to_dict())
  workdir_lib.check_resume(str(tmp_path), 'config.json',
                           cfg.replace(rounds=cfg.rounds + 5, checkpoint_every=1).to_dict())
  with pytest.raises(ConfigError, match='^--num_clients: .* holds a run with --num_clients=10'):
    workdir_lib.check_resume(str(tmp_path), 'config.json', cfg.replace(num_clients=20).to_dict())
  with pytest.raises(ConfigError, match='^--hidden: .*--hidden=10, got 10,4'):
    workdir_lib.check_resume(str(tmp_path), 'config.json', cfg.replace(hidden=(10, 4)).to_dict())
  with pytest.raises(ConfigError, match='^--rounds: .* may only grow'):
    workdir_lib.check_resume(str(tmp_path), 'config.json', cfg.replace(rounds=3).to_dict())


def _cli(*args, module='fedar_jax.main'):
  return [sys.executable, '-m', module, *args]


def _rows(path, drop=('round_s',)):
  with open(path, newline='') as f:
    return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def kill_at_random_row(cmd, csv_path, total_rows, rng):
  """Starts `cmd`, SIGKILLs it once `csv_path` holds a random number of rows in
  [1, total_rows - 2]; returns that number. Fails if the run ended first."""
  target = rng.randint(1, total_rows - 2)
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  try:
    while time.time() < deadline and proc.poll() is None:
      if os.path.exists(csv_path):
        with open(csv_path) as f:
          if sum(1 for _ in f) - 1 >= target:
            break
      time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait()
  assert proc.returncode == -signal.SIGKILL, f'the run ended before the kill (target row {target})'
  return target


def test_sigkill_and_resume_equals_uninterrupted_run(tmp_path):
  rounds = 16
  flags = RUN + [f'--rounds={rounds}', '--checkpoint_every=3', '--keep_checkpoints=2']
  ref = subprocess.run(_cli(f'--workdir={tmp_path / "ref"}', *flags), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert ref.returncode == 0, ref.stderr
  expected = _rows(tmp_path / 'ref' / 'metrics.csv')
  assert len({r['gmean'] + r['train_loss'] for r in expected}) > 3  # The metrics move.

  cmd = _cli(f'--workdir={tmp_path / "run"}', *flags)
  target = kill_at_random_row(cmd, str(tmp_path / 'run' / 'metrics.csv'), rounds,
                              random.Random())
  assert not (tmp_path / 'run' / 'summary.json').exists()
  ckpt_dir = tmp_path / 'run' / 'checkpoints'
  # A kill before round --checkpoint_every leaves no checkpoint: the rerun starts over.
  saved = ckpt_dir.is_dir() and any(n.isdigit() for n in os.listdir(ckpt_dir))
  resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr
  assert ('resuming after round' in resumed.stderr) == saved, f'killed at row {target}'
  assert _rows(tmp_path / 'run' / 'metrics.csv') == expected, f'killed at row {target}'
  got = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  want = json.loads((tmp_path / 'ref' / 'summary.json').read_text())
  assert got['final'] == want['final'] and got['confusion'] == want['confusion']
  assert len(os.listdir(tmp_path / 'run' / 'checkpoints')) == 2

  # Rerunning a finished run changes nothing; a changed shape flag is refused.
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr
  assert _rows(tmp_path / 'run' / 'metrics.csv') == expected
  bad = subprocess.run(cmd + ['--num_clients=5'], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert bad.returncode == 2 and 'Traceback' not in bad.stderr
  lines = bad.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: --num_clients: '), bad.stderr


def test_checkpoints_of_another_run_or_edited_rows_are_refused_before_anything_changes(
    tmp_path):
  """A seed-1 run's checkpoints copied into a seed-0 workdir, and a checkpoint whose rows
  were edited, are refused with one ConfigError; the workdir is left as it was."""
  from fedar_jax import loop
  cfg = RunConfig(num_clients=3, samples_per_client=40, feature_dim=8, test_per_class=30,
                  local_epochs=1, rounds=2, checkpoint_every=1)
  for seed in (0, 1):
    loop.train_and_evaluate(cfg.replace(seed=seed), str(tmp_path / f'seed{seed}'))
  record = json.loads((tmp_path / 'seed0' / 'checkpoints' / '2' / 'rows' / 'metadata')
                      .read_text())
  assert record['settings']['seed'] == 0 and len(record['rows']) == 2
  shutil.rmtree(tmp_path / 'seed0' / 'checkpoints')
  shutil.copytree(tmp_path / 'seed1' / 'checkpoints', tmp_path / 'seed0' / 'checkpoints')
  before = sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / 'seed0').rglob('*'))
  with pytest.raises(ConfigError, match='^--seed: checkpoint .* was made by a run with --seed=1'):
    loop.train_and_evaluate(cfg.replace(rounds=3), str(tmp_path / 'seed0'))
  assert sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / 'seed0').rglob('*')) == before

  rows = tmp_path / 'seed1' / 'checkpoints' / '1' / 'rows' / 'metadata'
  rows.write_text(rows.read_text().replace('"1", "0.', '"1", "1.', 1))
  with pytest.raises(ConfigError, match='^--workdir: checkpoint .*/1 was altered'):
    loop.train_and_evaluate(cfg.replace(seed=1, rounds=3), str(tmp_path / 'seed1'))
