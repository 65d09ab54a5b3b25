"""Errors met on the way: each is one line naming the flag or file, exit 2, nothing written.

Table-driven: the commands end to end (a workdir of the other command, a missing
flagfile), the data sources in-process (a directory as --data_path, TFDS with a
missing --data_dir or an unknown name; no TFDS data is read or downloaded).
"""
import os
import subprocess
import sys

import pytest

from fedar_jax.data import fer2013
from fedar_jax.data import latent_csv
from fedar_jax.data import tfds_source
from fedar_jax.data.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMAND_CASES = [
    # (module, settings file already in the workdir, extra flags, expected stderr line)
    ('fedar_jax.main', 'sweep.json', [], "holds a sweep (sweep.json); resume it with "
     'fedar-sweep, or use a new --workdir'),
    ('fedar_jax.sweep', 'config.json', ['--thresholds=1,2'],
     'holds a run (config.json); resume it with fedar-run, or use a new --workdir'),
    ('fedar_jax.main', None, ['--flagfile=MISSING'], 'cannot read (No such file or directory)'),
    ('fedar_jax.sweep', None, ['--flagfile=MISSING'], 'cannot read (No such file or directory)'),
]


@pytest.mark.parametrize('module,settings,extra,expected', COMMAND_CASES)
def test_command_refuses_with_one_line(tmp_path, module, settings, extra, expected):
  workdir = tmp_path / 'w'
  workdir.mkdir()
  if settings:
    (workdir / settings).write_text('{}')
  before = sorted(os.listdir(workdir))
  extra = [a.replace('MISSING', str(tmp_path / 'missing.flags')) for a in extra]
  proc = subprocess.run([sys.executable, '-m', module, f'--workdir={workdir}', '--rounds=1',
                         *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2, proc.stderr
  assert len(lines) == 1 and lines[0].startswith('error: ') and expected in lines[0], lines
  assert 'ERROR::' not in lines[0]
  assert sorted(os.listdir(workdir)) == before


def _directory(tmp_path):
  return str(tmp_path)


def _fifo(tmp_path):
  path = str(tmp_path / 'data.csv')
  os.mkfifo(path)
  return path


DATA_PATH_CASES = [
    (latent_csv.load, _directory, 'is a directory; --data_path names a file'),
    (fer2013.load, _directory, 'is a directory; --data_path names a file'),
    (latent_csv.load, _fifo, 'not a regular file (--data_path)'),
    (fer2013.load, lambda p: str(p / 'absent.csv'), 'no such file (--data_path)'),
]


@pytest.mark.parametrize('load,make,expected', DATA_PATH_CASES)
def test_data_path_that_is_not_a_file(tmp_path, load, make, expected):
  path = make(tmp_path)
  with pytest.raises(DataError) as e:
    load(path)
  assert str(e.value) == f'{path}: {expected}'


TFDS_CASES = [
    # (dataset name, data_dir under tmp_path (None: TFDS's default), expected message)
    ('mnist', 'absent', 'no such directory (--data_dir)'),
    ('mnist', 'a_file', 'is not a directory (--data_dir)'),
    ('mnistt', None, '--dataset=tfds:mnistt: no TFDS dataset of that name; closest: mnist, '),
]


@pytest.mark.parametrize('name,data_dir,expected', TFDS_CASES)
def test_tfds_refusals(tmp_path, name, data_dir, expected):
  (tmp_path / 'a_file').write_text('')
  path = '' if data_dir is None else str(tmp_path / data_dir)
  with pytest.raises(DataError) as e:
    tfds_source.load(name, data_dir=path)
  message = str(e.value)
  assert expected in message and '\n' not in message
  assert 'already prepared' not in message and 'TFRECORD' not in message
  assert len(message) < 200, message  # Five close names, not the whole catalogue.


def test_closest_names_are_five():
  listing = 'Dataset cifarr not found.\nAvailable datasets:\n' + ''.join(
      f'\t- {n}\n' for n in ('mnist', 'cifar10', 'cifar100', 'cars196', 'celeb_a', 'cifar10_1',
                             'imagenet2012'))
  names = tfds_source.closest('cifarr', listing).split(', ')
  assert len(names) == 5 and names[:3] == ['cifar10', 'cifar100', 'cifar10_1']
  assert 'imagenet2012' not in names and 'mnist' not in names


IR_CASES = [
    # (class counts of one client, IR in partition.json, in partition.csv, gate's traced IR)
    ([3, 2, 0], 1.5, '1.5000', 1.5),
    ([0, 0, 7], 'inf', 'inf', 1.0),  # A single class: no minority row to resample from.
    ([5, 0, 0], 'inf', 'inf', 1.0),
    ([4, 1, 1], 4.0, '4.0000', 4.0),
]


@pytest.mark.parametrize('counts,json_ir,csv_ir,gate_ir', IR_CASES)
def test_single_class_client_reports_inf(tmp_path, counts, json_ir, csv_ir, gate_ir):
  import csv
  import json
  import numpy as np
  from fedar_jax.data import federated, summary
  from fedar_jax.data.load import FederatedDataset
  from fedar_jax.resample import gate
  y = np.repeat(np.arange(3), counts)
  clients = federated.stack_clients([np.zeros((len(y), 2)), np.zeros((2, 2))],
                                    [y, np.array([0, 1])])
  test = federated.TestData(np.zeros((3, 2)), np.array([0, 1, 2]), np.ones(3, bool))
  s = summary.write_partition_summary(str(tmp_path), FederatedDataset(clients, test,
                                                                      ('a', 'b', 'c')))
  assert json.loads((tmp_path / 'partition.json').read_text())['ir'] == [json_ir, 1.0]
  with open(tmp_path / 'partition.csv') as f:
    assert [r['ir'] for r in csv.DictReader(f)] == [csv_ir, '1.0000']
  single = json_ir == 'inf'
  assert s['ir_histogram']['single_class'] == int(single)
  assert sum(s['ir_histogram']['clients']) == 2 - int(single)
  line = summary.single_class_line(s)
  assert (line == '1 of 2 clients hold a single class (IR inf; nothing to resample, the gate '
          'leaves them as they are): 0') if single else line is None
  assert float(gate.imbalance_ratio(np.array(counts))) == gate_ir


def _write_subjects(tmp_path, subjects=13, rows=6):
  """A latent CSV of `subjects` subjects x `rows` rows (two classes each) and an .npz twin."""
  import numpy as np
  lines = ['0,1,class,subject']
  for s in range(subjects):
    lines += [f'{r * 0.1},{s * 0.2},{r % 2},s{s:02d}' for r in range(rows)]
  (tmp_path / 'd.csv').write_text('\n'.join(lines) + '\n')
  groups = np.repeat(np.arange(subjects), rows)
  np.savez(tmp_path / 'd.npz', x=np.random.default_rng(0).random((len(groups), 2)),
           y=np.arange(len(groups)) % 2, groups=groups)


NATURAL_CASES = [
    # (flags after --dataset=latent_csv --partition=natural, clients expected)
    (['--data_path=CSV', '--client_column=subject'], 13),  # Every distinct id.
    (['--data_path=NPZ'], 13),  # The .npz's groups array.
    (['--data_path=CSV', '--client_column=subject', '--num_clients=5'], 5),  # As given.
    (['--data_path=CSV', '--client_column=subject', '--num_clients=10'], 10),  # The default, given.
    (['--data_path=CSV'], 10),  # No client column: the default (the loader says what is missing).
    (['--data_path=ABSENT', '--client_column=subject'], 10),  # Unreadable: the loader says why.
]


@pytest.mark.parametrize('args,clients', NATURAL_CASES)
def test_natural_partition_uses_every_id_unless_num_clients_given(tmp_path, args, clients):
  from absl import flags
  from fedar_jax import cli
  _write_subjects(tmp_path)
  paths = {'CSV': tmp_path / 'd.csv', 'NPZ': tmp_path / 'd.npz', 'ABSENT': tmp_path / 'x.csv'}
  values = flags.FlagValues()
  cli.define_config_flags(values)
  values(['prog', '--dataset=latent_csv', '--partition=natural', '--samples_per_client=0',
          '--test_per_class=1', *[a.split('=')[0] + '=' + str(paths.get(a.split('=')[1],
                                                                       a.split('=')[1]))
                                  for a in args]])
  assert cli.config_from_flags(values).num_clients == clients


def test_natural_partition_says_how_many_it_used(tmp_path, caplog):
  import numpy as np
  from fedar_jax.config import RunConfig
  from fedar_jax.data.load import load_federated
  _write_subjects(tmp_path)
  cfg = RunConfig(dataset='latent_csv', data_path=str(tmp_path / 'd.csv'), partition='natural',
                  client_column='subject', num_clients=13, samples_per_client=0,
                  test_per_class=1)
  with caplog.at_level('WARNING'):
    data = load_federated(cfg)
  assert np.asarray(data.clients.client_id).tolist() == list(range(13))
  assert ('--partition=natural: 13 clients, one per --client_column id (13 distinct ids in the '
          'training rows)') in caplog.text
