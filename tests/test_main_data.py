"""The CLI on real-data sources: an end-to-end CNN run and one-line errors for bad input."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from fedar_jax.data.pattern_faces import write_fer2013_csv
from tests.test_main import run_cli

TINY_CNN = ['--model=cnn', '--image_size=8', '--cnn_channels=2', '--latent_dim=4', '--hidden=4',
            '--num_clients=3', '--partition=iid', '--samples_per_client=0',
            '--test_per_class=5', '--rounds=2', '--local_epochs=1', '--batch_size=16']


def test_fer2013_cnn_joint_latent_resampling_from_cli(tmp_path):
  path = tmp_path / 'fer.csv'
  write_fer2013_csv(str(path), seed=0, per_class=[30, 12], emotions=(3, 4))
  workdir = tmp_path / 'run'
  proc = run_cli(f'--workdir={workdir}', '--dataset=fer2013', f'--data_path={path}',
                 '--classes=Sad,Happy', '--latent_resampling=joint', '--resample_every=round',
                 *TINY_CNN)
  assert proc.returncode == 0, proc.stderr
  with open(workdir / 'metrics.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 and 'recall_Sad' in rows[0] and 'recall_Happy' in rows[0]
  assert int(rows[0]['resampled_clients']) >= 1
  part = json.loads((workdir / 'partition.json').read_text())
  assert part['class_names'] == ['Sad', 'Happy'] and part['test_per_class'] == [5, 5]
  # All 42 - 10 test rows are shared out; Sad (7 training rows) is the minority.
  counts = np.array(part['counts'])
  assert counts.sum() == 32 and counts[:, 0].sum() == 7
  with open(workdir / 'partition.csv') as f:
    assert next(csv.reader(f)) == ['client', 'n', 'count_Sad', 'count_Happy', 'ir', 'attacker']
  assert (workdir / 'partition.png').stat().st_size > 1000


def write_folder(root, empty=False):
  for name in ('happy', 'sad'):
    (root / name).mkdir(parents=True)
    if not (empty and name == 'sad'):
      for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(root / name / f'{i}.png')


@pytest.mark.parametrize('case,pattern', [
    ('missing_file', 'absent.csv: no such file (--data_path)'),
    ('bad_classes', "--classes: class 'Fear' is not in the data"),
    ('pixel_count', 'row 1: 3 pixels, expected 2304'),
    ('empty_folder', 'empty class folder'),
    ('too_few_samples', '--num_clients: 4 training samples'),
    ('cnn_on_vectors', '--model: cnn needs images'),
    ('mlp_latent', '--latent_resampling: joint needs --model=cnn'),
])
def test_bad_data_is_one_line_exit_2(tmp_path, case, pattern):
  fer = tmp_path / 'fer.csv'
  write_fer2013_csv(str(fer), seed=0, per_class=[4, 4], emotions=(3, 4))
  lat = tmp_path / 'lat.npz'
  np.savez(lat, x=np.zeros((12, 3)), y=np.arange(12) % 2)
  args = {
      'missing_file': ['--dataset=fer2013', f'--data_path={tmp_path / "absent.csv"}'],
      'bad_classes': ['--dataset=fer2013', f'--data_path={fer}', '--classes=Happy,Fear'],
      'pixel_count': ['--dataset=fer2013', f'--data_path={tmp_path / "short.csv"}'],
      'empty_folder': ['--dataset=image_folder', f'--data_dir={tmp_path / "imgs"}'],
      'too_few_samples': ['--dataset=latent_csv', f'--data_path={lat}', '--test_per_class=4',
                          '--partition=iid', '--num_clients=5'],
      'cnn_on_vectors': ['--dataset=latent_csv', f'--data_path={lat}', '--test_per_class=2',
                         '--partition=iid', '--num_clients=2', '--model=cnn'],
      'mlp_latent': ['--dataset=fer2013', f'--data_path={fer}', '--latent_resampling=joint'],
  }[case]
  (tmp_path / 'short.csv').write_text('emotion,pixels,Usage\n3,1 2 3,Training\n')
  write_folder(tmp_path / 'imgs', empty=True)
  proc = run_cli(f'--workdir={tmp_path / "w"}', *args)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and pattern in lines[0], proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('changes,pattern', [
    ({'dataset': 'tfds:'}, '--dataset: unknown dataset'),
    ({'dataset': 'fer2013', 'partition': 'bogus'}, '--partition: unknown value'),
    ({'partition': 'iid'}, '--partition: iid applies to real data only'),
    ({'model': 'cnn'}, '--model: cnn needs image data'),
    ({'dataset': 'fer2013', 'attacker_fraction': 1.5}, '--attacker_fraction: must be in'),
    ({'dataset': 'fer2013', 'attack_ratio': 0.5}, '--attack_ratio: must be 0 or >= 1'),
    ({'dataset': 'fer2013', 'image_size': 8, 'cnn_channels': (4, 4, 4, 4)}, '--image_size: 8'),
    ({'dataset': 'fer2013', 'fer2013_usage': ('Train',)}, "--fer2013_usage: unknown usage"),
])
def test_config_rejects_bad_data_flags(changes, pattern):
  from fedar_jax.config import ConfigError, RunConfig, validate
  with pytest.raises(ConfigError, match=pattern):
    validate(RunConfig(**changes))
