"""What checkpoints record, and the refusals of a resume that does not match it."""
import json
import os
import subprocess
import sys

import pytest

from fedar_jax import checkpoint_record
from fedar_jax import sweep_axes
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import ConfigError, RunConfig
from tests.test_checkpoint import ROOT

SMALL = ['--num_clients=4', '--samples_per_client=40', '--rounds=2', '--local_epochs=1',
         '--test_per_class=50', '--feature_dim=16']


def _cfg(**changes):
  return RunConfig(num_clients=4, samples_per_client=40, rounds=2, local_epochs=1,
                   test_per_class=50, feature_dim=16).replace(**changes)


def _write_checkpoint(directory, step, rows, settings, edit=None):
  """A checkpoint's JSON item as checkpoint.py writes it (the state is not read here)."""
  item = checkpoint_record.make(rows, settings)
  if edit:
    edit(item)
  path = os.path.join(directory, str(step), 'rows')
  os.makedirs(path)
  with open(os.path.join(path, 'metadata'), 'w') as f:
    json.dump(item, f)


def _tree(path):
  """{relative path: (size, mtime_ns)} of everything below `path`."""
  out = {}
  for top, _, files in os.walk(path):
    for name in files:
      st = os.stat(os.path.join(top, name))
      out[os.path.relpath(os.path.join(top, name), path)] = (st.st_size, st.st_mtime_ns)
  return out


def test_a_checkpoint_of_the_same_run_passes_and_the_digest_covers_rows_and_settings(tmp_path):
  settings = workdir_lib.run_settings(_cfg())
  _write_checkpoint(tmp_path, 2, [[1, '0.5'], [2, '0.6']], settings)
  checkpoint_record.check(str(tmp_path), settings)
  checkpoint_record.check(str(tmp_path), {**settings, 'rounds': 9, 'checkpoint_every': 1})
  item = checkpoint_record.make([[1, 0.5]], settings)
  assert item['rows'] == [['1', '0.5']]
  assert item['sha256'] != checkpoint_record.make([[1, 0.6]], settings)['sha256']
  assert item['sha256'] != checkpoint_record.make([[1, 0.5]], {**settings, 'seed': 1})['sha256']


@pytest.mark.parametrize('case, match', [
    ('other_seed', r"^--seed: checkpoint .*/3 was made by a run with --seed=1, got 0; "
                   r"remove .* or use a new --workdir$"),
    ('edited_row', r'^--workdir: checkpoint .*/3 was altered after it was written'),
    ('edited_settings', r'^--workdir: checkpoint .*/3 was altered after it was written'),
    ('no_digest', r'^--workdir: checkpoint .*/3 was altered after it was written'),
    ('missing_key', r"^--seed: checkpoint .*/3 was made by a run with no recorded 'seed'"),
    ('other_data', r'^--data_path: the data changed since checkpoint .*/3 was made: its '
                   r'content changed'),
])
def test_checkpoints_of_another_run_or_edited_are_refused(tmp_path, case, match):
  settings = workdir_lib.run_settings(_cfg())
  stored, edit = settings, None
  if case == 'other_seed':
    stored = {**settings, 'seed': 1}
  elif case == 'edited_row':
    edit = lambda item: item['rows'][0].__setitem__(1, '0.99')
  elif case == 'edited_settings':
    edit = lambda item: item['settings'].__setitem__('seed', 5)
  elif case == 'no_digest':
    edit = lambda item: item.pop('sha256')
  elif case == 'missing_key':
    stored = {k: v for k, v in settings.items() if k != 'seed'}
  elif case == 'other_data':
    data = tmp_path / 'a.csv'
    data.write_text('0,class\n1,0\n')
    stored = workdir_lib.run_settings(_cfg(dataset='latent_csv', data_path=str(data)))
    data.write_text('0,class\n2,0\n')  # Rewritten since the checkpoint.
    settings = workdir_lib.run_settings(_cfg(dataset='latent_csv', data_path=str(data)))
  _write_checkpoint(tmp_path / 'c', 3, [[1, '0.5']], stored, edit)
  with pytest.raises(ConfigError, match=match):
    checkpoint_record.check(str(tmp_path / 'c'), settings)


def test_unreadable_and_older_checkpoints_pass(tmp_path, caplog):
  settings = workdir_lib.run_settings(_cfg())
  _write_checkpoint(tmp_path, 1, [[1, '0.5']], None)  # Written before settings were recorded.
  os.makedirs(tmp_path / '2' / 'rows')
  (tmp_path / '2' / 'rows' / 'metadata').write_text('{"rows": [[')  # Set aside on resume.
  checkpoint_record.check(str(tmp_path), settings)
  assert 'record no settings' in caplog.text


def test_config_json_missing_a_key_or_with_other_data_is_refused(tmp_path, caplog):
  cfg = _cfg()
  settings = workdir_lib.run_settings(cfg)
  stored = {k: v for k, v in settings.items() if k != 'seed'}
  workdir_lib.save_settings(str(tmp_path), 'config.json', stored)
  with pytest.raises(ConfigError, match=r"^--seed: .* holds a run with no recorded 'seed'"):
    workdir_lib.check_resume(str(tmp_path), 'config.json', settings)
  # A workdir started before fingerprints were kept: resumed with a warning.
  workdir_lib.save_settings(str(tmp_path), 'config.json', cfg.to_dict())
  workdir_lib.check_resume(str(tmp_path), 'config.json', settings)
  assert 'records no data fingerprint' in caplog.text


def _run(module, workdir, *flags):
  return subprocess.run([sys.executable, '-m', module, f'--workdir={workdir}', *flags],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)


def _refused(result, start):
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(start), result.stderr


def test_the_commands_refuse_before_anything_changes(tmp_path):
  """fedar-run on a latent CSV rewritten since the workdir started and on a seed-1 run's
  checkpoints in a seed-0 workdir; fedar-sweep on another sweep's checkpoints: one line,
  exit 2, no file touched."""
  data = tmp_path / 'latent.csv'
  data.write_text('0,1,class\n' + ''.join(f'{i % 7}.5,{i % 3},{i % 2}\n' for i in range(400)))
  flags = SMALL[:-1] + ['--dataset=latent_csv', f'--data_path={data}', '--test_per_class=20',
                        '--imbalance_ratio=2']
  cfg = _cfg(dataset='latent_csv', data_path=str(data), test_per_class=20, imbalance_ratio=2,
             feature_dim=432)
  run = tmp_path / 'run'
  workdir_lib.save_settings(str(run), 'config.json', workdir_lib.run_settings(cfg))
  data.write_text(data.read_text().replace('0.5', '-0.5'))
  before = _tree(run)
  _refused(_run('fedar_jax.main', run, *flags), "error: --data_path: the data changed since ")
  assert _tree(run) == before

  seeded = tmp_path / 'seeded'
  settings = workdir_lib.run_settings(_cfg())
  workdir_lib.save_settings(str(seeded), 'config.json', settings)
  _write_checkpoint(seeded / 'checkpoints', 2, [[1, '0.5']], {**settings, 'seed': 1})
  before = _tree(seeded)
  _refused(_run('fedar_jax.main', seeded, *SMALL, '--rounds=3'),
           'error: --seed: checkpoint ')
  assert _tree(seeded) == before

  sweep = tmp_path / 'sweep'
  lists = ['--thresholds=1.5,3']
  other = {name: [] for name in sweep_axes.SWEEP_FLAGS}
  _write_checkpoint(sweep / 'checkpoints' / 'smote', 2, [[1, '0.5']], workdir_lib.sweep_settings(
      _cfg(), {**other, 'thresholds': [1.5, 4.0]}))
  before = _tree(sweep)
  _refused(_run('fedar_jax.sweep', sweep, *SMALL, *lists),
           'error: --thresholds: checkpoint ')
  assert _tree(sweep) == before
