"""Sizes checked before allocating: decoded images and the model."""
import math
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest

from fedar_jax import memory_estimate
from fedar_jax import models
from fedar_jax import train
from fedar_jax.config import ConfigError, RunConfig, validate
from fedar_jax.methods import registry
from fedar_jax.data.pattern_faces import write_fer2013_csv
from tests.test_checkpoint import ROOT


def _params(net, x):
  return sum(math.prod(a.shape) for a in jax.tree.leaves(net.init(jax.random.key(0), x)))


def test_the_parameter_count_is_the_models():
  assert memory_estimate.param_count('mlp', (7, 5), 64, (16, 32), (12,), 3) == _params(
      models.MLP(num_classes=3, hidden=(7, 5)), jnp.zeros((1, 12)))
  assert memory_estimate.param_count('cnn', (6,), 9, (4, 8), (16, 16, 1), 2) == _params(
      models.cnn(2, (6,), 9, (4, 8), patches=True), jnp.zeros((1, 16, 16, 1)))
  assert memory_estimate.param_count('custom', (6,), 9, (4, 8), (16, 16, 1), 2) is None


def test_usual_sizes_pass_and_absurd_ones_name_the_flag():
  have = 16 * 2 ** 30
  memory_estimate.check_model(RunConfig(), (432,), 2, have)
  memory_estimate.check_model(RunConfig(model='cnn', dataset='fer2013'), (48, 48, 1), 7, have)
  for cfg, shape, flag in [
      (RunConfig(hidden=(2147483647,)), (432,), 'hidden'),
      (RunConfig(hidden=(100000, 100000)), (432,), 'hidden'),
      (RunConfig(model='cnn', latent_dim=2147483647), (48, 48, 1), 'latent_dim'),
      (RunConfig(model='cnn', cnn_channels=(100000, 100000)), (48, 48, 1), 'cnn_channels'),
      (RunConfig(model='cnn', image_size=4096), (4096, 4096, 1), 'image_size')]:
    with pytest.raises(ConfigError, match=f'^--{flag}: .* makes the model '):
      memory_estimate.check_model(cfg, shape, 2, have)


def toy_wide(cfg, data, resampler):
  """A registered model: rows [D] -> --hidden[0] units -> K logits, no bias."""
  d, k, h = math.prod(data.clients.x.shape[2:]), len(data.class_names), cfg.hidden[0]
  del resampler
  params = {'w1': jnp.zeros((d, h)), 'w2': jnp.zeros((h, k))}
  return train.Model(lambda p, x: x.reshape(len(x), -1) @ p['w1'] @ p['w2'], params)


def toy_huge(cfg, data, resampler):
  """A registered model whose size no flag sets: 2^40 parameters."""
  return train.Model(lambda p, x: x, {'w': jnp.zeros((2 ** 20, 2 ** 20))})


def toy_concrete(cfg, data, resampler):
  """A registered model whose builder reads an array back (not traceable)."""
  return train.Model(lambda p, x: x, {'w': jnp.zeros(int(jnp.ones(()) * 3))})


def test_a_registered_model_is_counted_and_refused_before_it_allocates():
  small = dict(num_clients=2, samples_per_client=12, test_per_class=2, feature_dim=12)
  with registry.scoped():
    for build in (toy_wide, toy_huge, toy_concrete):
      registry.register(registry.Method('model', build.__name__, build))
    cfg = validate(RunConfig(model='toy_wide', hidden=(7,), **small))
    assert memory_estimate.model_param_count(cfg, (12,), 3) == 12 * 7 + 7 * 3
    memory_estimate.check_model(cfg, (12,), 3, 2 ** 30)
    assert memory_estimate.model_param_count(cfg.replace(model='toy_concrete'), (12,), 3) is None
    with pytest.raises(ConfigError, match='^--hidden: 2147483647 makes the model '
                       r'\(30,064,771,058 parameters\)'):
      train.build(cfg.replace(hidden=(2147483647,)))
    with pytest.raises(ConfigError, match='^--model: toy_huge makes the model'):
      memory_estimate.check_model(cfg.replace(model='toy_huge'), (12,), 3, 2 ** 30)


def test_decoded_images_are_bounded_from_the_file_or_the_folder(tmp_path):
  write_fer2013_csv(str(tmp_path / 'f.csv'), seed=0, per_class=[20, 20])
  cfg = RunConfig(dataset='fer2013', data_path=str(tmp_path / 'f.csv'), image_size=1024)
  rows = os.path.getsize(tmp_path / 'f.csv') // memory_estimate.FER_ROW_BYTES
  assert 0 < rows <= 40
  assert memory_estimate.decoded_image_bytes(cfg) == rows * 1024 ** 2 * 4
  with pytest.raises(ConfigError, match='^--image_size: 1024 makes the decoded images of '):
    memory_estimate.check_decoded_images(cfg, 2 ** 20)
  for name in ('a/1.png', 'a/2.png', 'b/3.png', 'b/.hidden'):
    (tmp_path / 'img' / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / 'img' / name).write_bytes(b'')
  folder = RunConfig(dataset='image_folder', data_dir=str(tmp_path / 'img'), image_size=64,
                     color='rgb')
  assert memory_estimate.decoded_image_bytes(folder) == 3 * 64 * 64 * 3 * 4
  assert memory_estimate.decoded_image_bytes(cfg.replace(fer2013_usage=('Training',))) is None


SMALL = ['--num_clients=4', '--samples_per_client=40', '--rounds=2', '--local_epochs=1',
         '--test_per_class=50', '--feature_dim=16']
FER = ['--num_clients=2', '--samples_per_client=8', '--test_per_class=2', '--rounds=1',
       '--local_epochs=1', '--imbalance_ratio=2', '--model=cnn', '--dataset=fer2013']


@pytest.mark.parametrize('flags, start', [
    (SMALL + ['--hidden=2147483647'], 'error: --hidden: 2147483647 makes the model'),
    (SMALL + ['--hidden=1000000,1000000'], 'error: --hidden: 1000000,1000000 makes the'),
    (FER + ['--latent_dim=2147483647'], 'error: --latent_dim: 2147483647 makes the model'),
    (FER + ['--cnn_channels=100000,100000'], 'error: --cnn_channels: 100000,100000 makes'),
    (FER + ['--image_size=16384'], 'error: --image_size: 16384 makes the '),
])
def test_absurd_sizes_end_in_seconds_with_one_line(tmp_path, flags, start):
  data = tmp_path / 'fer.csv'
  write_fer2013_csv(str(data), seed=0, per_class=[20, 20])
  flags = [f.replace('--dataset=fer2013', f'--dataset=fer2013 --data_path={data}')
           for f in flags]
  t = time.perf_counter()
  result = subprocess.run([sys.executable, '-m', 'fedar_jax.main',
                           f'--workdir={tmp_path / "w"}', *' '.join(flags).split()],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(start), (
      result.stderr)
  assert time.perf_counter() - t < 30
  assert not (tmp_path / 'w').exists()
