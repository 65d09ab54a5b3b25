"""Every class of bad input gives one line naming the flag or file, and writes nothing.

Table-driven: most cases run in-process (flag parsing + validation, the
workdir checks, the data loaders), a handful end to end through the CLI
(exit status 2, one stderr line, the workdir untouched).
"""
import dataclasses
import os
import struct
import subprocess
import sys
import typing
import zlib

from absl import flags
import jax
import numpy as np
import pytest
from PIL import Image

from fedar_jax import config as config_lib
from fedar_jax import cli
from fedar_jax import fedar_round
from fedar_jax import sweep_runner
from fedar_jax import loop
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import ConfigError, RunConfig
from fedar_jax.data.errors import DataError
from fedar_jax.data.load import load_federated
from fedar_jax.data.pattern_faces import write_fer2013_csv
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLOAT_FLAGS = [f.name for f in dataclasses.fields(RunConfig)
               if typing.get_type_hints(RunConfig)[f.name] is float]

FLAG_CASES = [
    # Every float flag must be a finite float32 number.
    *[(f'--{name}={v}', f'--{name}: must be a finite float32 number')
      for name in FLOAT_FLAGS for v in ('nan', 'inf', '-inf')],
    ('--threshold=1e39', '--threshold: must be a finite float32 number, got 1e+39'),
    # Seeds and sizes are int32.
    ('--seed=-1', '--seed: must be >= 0, got -1'),
    ('--seed=2147483648', '--seed: 2147483648 is outside the int32 range'),
    ('--data_seed=-2147483649', '--data_seed: -2147483649 is outside the int32 range'),
    ('--batch_size=1000000000000', '--batch_size: 1000000000000 is outside the int32 range'),
    ('--num_clients=1000000000000000', '--num_clients: 1000000000000000 is outside the int32'),
    ('--hidden=10,3000000000', '--hidden: 3000000000 is outside the int32 range'),
    # Sizes whose data alone cannot fit in memory are refused before allocating.
    ('--num_clients=100000000', '--num_clients: 100000000 makes the data alone need at least'),
    ('--feature_dim=1000000000', '--feature_dim: 1000000000 makes the data alone need'),
    ('--num_classes=1000000000 --test_per_class=1 --samples_per_client=2000000000',
     'makes the data alone need'),
    ('--batch_size=2000000000', '--batch_size: 2000000000 makes the data alone need'),
    # float32 underflow.
    ('--learning_rate=1e-50', '--learning_rate: 1e-50 is 0 (or denormal) in float32'),
    ('--learning_rate=1e-40', '--learning_rate: 1e-40 is 0 (or denormal) in float32'),
    ('--dataset=latent_csv --data_path=x.csv --label_column=', '--label_column: is empty'),
    ('--data_dtype=float16', "--data_dtype: unknown value 'float16'; allowed: float32, bfloat16"),
    ('--cpu_devices=-1', '--cpu_devices: must be in [0, 256], got -1'),
    ('--cpu_devices=257', '--cpu_devices: must be in [0, 256], got 257'),
]


def _config(args: str) -> RunConfig:
  values = flags.FlagValues()
  cli.define_config_flags(values)
  values(['prog', *args.split()])
  return cli.config_from_flags(values)


@pytest.mark.parametrize('args,pattern', FLAG_CASES)
def test_bad_flag_is_one_line_naming_it(args, pattern):
  with pytest.raises(ConfigError) as e:
    _config(args)
  message = str(e.value)
  assert pattern in message and '\n' not in message, message


def test_defaults_and_usual_values_pass():
  _config('')
  _config('--seed=2147483647 --learning_rate=1e-30 --num_clients=1000 --threshold=1e30')


@pytest.mark.parametrize('name,raw,pattern', [
    ('thresholds', '1,nan', '--thresholds: must be a finite float32 number'),
    ('learning_rates', '0.01,1e-50', '--learning_rates: 1e-50 is 0 (or denormal) in float32'),
    ('seeds', '0,-1', '--seeds: must be >= 0, got -1'),
    ('seeds', '0,2147483648', '--seeds: 2147483648 is outside the int32 range'),
    ('imbalance_ratios', 'inf', '--imbalance_ratios: must be a finite float32 number'),
    ('dp_noise_multipliers', '1,nan', '--dp_noise_multipliers: must be a finite float32'),
    ('dp_noise_multipliers', '1,-0.5', '--dp_noise_multipliers: must be >= 0, got -0.5'),
    ('dp_clip_norms', '0', '--dp_clip_norms: must be > 0, got 0'),
    ('dp_target_quantiles', '0.5,2', '--dp_target_quantiles: must be in [0, 1], got 2'),
])
def test_bad_sweep_list_is_one_line_naming_it(name, raw, pattern):
  from fedar_jax import sweep  # Defines the sweep list flags on absl's global FLAGS.
  values = flags.FlagValues()
  for other in sweep.SWEEP_FLAGS:
    flags.DEFINE_list(other, [], '', flag_values=values)
  values(['prog', f'--{name}={raw}'])
  with pytest.raises(ConfigError) as e:
    sweep.sweep_lists(values, RunConfig())
  assert pattern in str(e.value) and '\n' not in str(e.value), str(e.value)


def _tree(path):
  """Every path below `path` with its size and content hash: 'nothing changed' compares these."""
  out = {}
  for root, dirs, files in os.walk(path):
    for name in dirs:
      out[os.path.relpath(os.path.join(root, name), path)] = 'dir'
    for name in files:
      with open(os.path.join(root, name), 'rb') as f:
        out[os.path.relpath(os.path.join(root, name), path)] = zlib.crc32(f.read())
  return out


def _workdir_case(tmp_path, case):
  """Builds a bad workdir; returns its path."""
  w = tmp_path / 'w'
  if case == 'below_a_file':
    (tmp_path / 'file').write_text('x')
    return tmp_path / 'file' / 'sub' / 'w'
  if case == 'is_a_file':
    w.write_text('x')
    return w
  w.mkdir()
  if case == 'checkpoints_is_a_file':
    (w / 'checkpoints').write_text('x')
  elif case == 'config_empty':
    (w / 'config.json').write_text('')
  elif case == 'config_truncated':
    (w / 'config.json').write_text('{"num_clients": 3, "seed"')
  elif case == 'config_is_a_directory':
    (w / 'config.json').mkdir()
  elif case == 'config_is_a_list':
    (w / 'config.json').write_text('[1, 2]')
  return w


@pytest.mark.parametrize('case,pattern', [
    ('below_a_file', 'which is not a directory'),
    ('is_a_file', 'exists and is not a directory'),
    ('checkpoints_is_a_file', "checkpoints' exists and is not a directory"),
    ('config_empty', 'config.json is not a readable settings file (JSONDecodeError)'),
    ('config_truncated', 'config.json is not a readable settings file (JSONDecodeError)'),
    ('config_is_a_directory', 'config.json is not a readable settings file (Is a directory)'),
    ('config_is_a_list', 'config.json holds a JSON list, not the settings object'),
])
def test_bad_workdir_is_one_line_and_unchanged(tmp_path, case, pattern):
  w = _workdir_case(tmp_path, case)
  before = _tree(tmp_path)
  with pytest.raises(ConfigError) as e:
    workdir_lib.check_paths(str(w))
    workdir_lib.check_resume(str(w), 'config.json', RunConfig().to_dict())
  assert str(e.value).startswith('--workdir: ') and pattern in str(e.value), str(e.value)
  assert '\n' not in str(e.value)
  assert _tree(tmp_path) == before


def _png_claiming(path, width, height):
  """A valid 1x1 PNG whose IHDR is rewritten to claim width x height (CRC fixed)."""
  Image.new('L', (1, 1)).save(path)
  data = bytearray(path.read_bytes())
  data[16:24] = struct.pack('>II', width, height)
  data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
  path.write_bytes(bytes(data))


def _file_case(tmp_path, case) -> RunConfig:
  """Writes a bad input file; returns the config that reads it."""
  small = dict(num_clients=2, test_per_class=2, partition='iid')
  if case == 'npz_truncated':
    np.savez(tmp_path / 'd.npz', x=np.zeros((40, 3)), y=np.arange(40) % 2)
    data = (tmp_path / 'd.npz').read_bytes()
    (tmp_path / 'd.npz').write_bytes(data[:len(data) // 2])
    return RunConfig(dataset='latent_csv', data_path=str(tmp_path / 'd.npz'), **small)
  if case == 'npz_groups_length':
    np.savez(tmp_path / 'd.npz', x=np.zeros((40, 3)), y=np.arange(40) % 2,
             groups=np.arange(39) % 4)
    return RunConfig(dataset='latent_csv', data_path=str(tmp_path / 'd.npz'),
                     **{**small, 'partition': 'natural'})
  if case == 'fer_row_without_usage':
    write_fer2013_csv(str(tmp_path / 'f.csv'), seed=0, per_class=[4, 4])
    lines = (tmp_path / 'f.csv').read_text().splitlines()
    lines[3] = lines[3].rsplit(',', 1)[0]  # Drops the Usage cell of data row 3.
    (tmp_path / 'f.csv').write_text('\n'.join(lines) + '\n')
    return RunConfig(dataset='fer2013', data_path=str(tmp_path / 'f.csv'), **small)
  if case in ('png_30000', 'png_9000'):
    side = 30000 if case == 'png_30000' else 9000
    for k in ('a', 'b'):
      (tmp_path / 'img' / k).mkdir(parents=True)
      for i in range(3):
        Image.new('L', (8, 8), 50 * i).save(tmp_path / 'img' / k / f'{i}.png')
    _png_claiming(tmp_path / 'img' / 'b' / '1.png', side, side)
    return RunConfig(dataset='image_folder', data_dir=str(tmp_path / 'img'), **small)
  if case == 'absent_class':
    write_fer2013_csv(str(tmp_path / 'f.csv'), seed=0, per_class=[4, 4])
    return RunConfig(dataset='fer2013', data_path=str(tmp_path / 'f.csv'),
                     classes=('Happy', 'Fear'), **small)
  assert case == 'missing_data_path'
  return RunConfig(dataset='latent_csv', data_path=str(tmp_path / 'absent.csv'), **small)


FILE_CASES = [
    ('npz_truncated', 'd.npz: cannot read .npz file (BadZipFile'),
    ('npz_groups_length', "d.npz: array 'groups' has shape (39,), expected (40,)"),
    ('fer_row_without_usage', 'f.csv: row 3: 2 cells, the header has 3'),
    ('png_30000', '1.png: unreadable image (DecompressionBombError: Image size (900000000'),
    ('png_9000', '1.png: image header claims 9000x9000 pixels'),
    ('absent_class', "--classes: class 'Fear' is not in the data"),
    ('missing_data_path', 'absent.csv: no such file (--data_path)'),
]


@pytest.mark.parametrize('case,pattern', FILE_CASES)
def test_bad_file_is_one_line_naming_it(tmp_path, case, pattern):
  cfg = config_lib.validate(_file_case(tmp_path, case))
  with pytest.raises(DataError) as e:
    load_federated(cfg)
  assert pattern in str(e.value) and '\n' not in str(e.value), str(e.value)


@pytest.mark.parametrize('case', ['missing_data_path', 'absent_class'])
def test_sweep_data_error_writes_nothing(tmp_path, case):
  base = _file_case(tmp_path, case).replace(rounds=2)
  started = []
  with pytest.raises(DataError):
    sweep_runner.run_sweep(base, sweep_runner.SweepAxes.of(base, thresholds=(1.0, 2.0)),
                           str(tmp_path / 'sweep'), on_start=lambda: started.append(1))
  assert not started and not (tmp_path / 'sweep').exists()


def test_train_loss_is_the_mean_over_finite_clients():
  clients, test = helpers.unequal_clients()
  spec, state = helpers.small_spec(clients, epochs=1)
  faulty = clients._replace(x=clients.x.copy())
  faulty.x[2, :5] = np.where(np.arange(faulty.x.shape[2]) % 2, 3e38, -3e38)
  _, out = jax.jit(fedar_round.make_round(spec))(
      state, faulty, test, fedar_round.HParams.create(1.5, 0.01, 0))
  assert int(out.metrics['dropped_clients']) == 1
  loss = np.asarray(out.clients.loss)
  assert not np.isfinite(loss[2]) and np.isfinite(np.delete(loss, 2)).all()
  row = dict(zip(loop.csv_header(['0', '1', '2']), loop.csv_rows(1, jax.tree.map(lambda a: np.asarray(a)[None], out), 0.0)[0]))
  assert float(row['train_loss']) == pytest.approx(np.mean(np.delete(loss, 2)), abs=1e-6)


def _cli(*args, module='fedar_jax.main'):
  return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


def test_end_to_end_bad_inputs_exit_2_with_one_line(tmp_path):
  """A handful through the CLI: a flag, a file, a sweep data error, a workdir."""
  _file_case(tmp_path, 'npz_truncated')
  bad_config = _workdir_case(tmp_path, 'config_is_a_list')
  runs = [
      (['--threshold=nan'], tmp_path / 'a', '--threshold: must be a finite'),
      (['--dataset=latent_csv', f'--data_path={tmp_path / "d.npz"}'], tmp_path / 'b',
       'd.npz: cannot read .npz file'),
      (['--dataset=latent_csv', f'--data_path={tmp_path / "absent.csv"}', '--thresholds=1,2'],
       tmp_path / 'c', 'absent.csv: no such file', 'fedar_jax.sweep'),
      ([], bad_config, 'config.json holds a JSON list'),
  ]
  for args, workdir, pattern, *module in runs:
    before = _tree(tmp_path)
    proc = _cli(f'--workdir={workdir}', *args, module=module[0] if module else 'fedar_jax.main')
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and pattern in lines[0], (
        proc.stderr)
    assert _tree(tmp_path) == before, args
