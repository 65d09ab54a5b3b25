"""Every hostile case of the bad-input issue, run through the commands and classified.

  python experiments/hostile_check.py [--cases=SUBSTRING,...] [--quick] [--timeout=120]

Each case builds its files in a fresh temporary folder, then runs one command
(`python -m fedar_jax.main|sweep|report`, or a console script as pyproject.toml
declares it) as a subprocess with a time limit, and a memory cap (RLIMIT_AS) where
the case is about memory. Its outcome is one of

  refused  exit 2, exactly one stderr line `error: ...` naming the flag or file, and
           the workdir as it was before the command
  fault    exit 1, the last stderr line `error: ...` naming the cause, after nothing but a
           run's progress lines (a full disk, a full stdout)
  ran      exit 0, no traceback, and the result checked where the case says how
  signal   exit 130/143, the last stderr line `interrupted ...` (after a run's progress
           lines), no traceback
  noise    a traceback, or more than one line where one was due
  hang     the time limit passed
  wrong    anything else: a different line, a file written, a wrong result

One row per case, then the count per outcome; exits 1 if any case's outcome is not
the one it expects. Cases needing root (a read-only or full tmpfs, an unreadable
folder) run as root only and are counted as `root-only` otherwise. Timings are
wall-clock on whatever else the machine runs.
"""
import argparse
import collections
import csv
import io
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from typing import Callable, NamedTuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B = ['--num_clients=4', '--samples_per_client=40', '--rounds=2', '--local_epochs=1',
     '--test_per_class=50', '--feature_dim=16']
# Flags that fit the small data files the cases write (after B: the last value wins).
FER = ['--dataset=fer2013', '--data_path={tmp}/f.csv', '--num_clients=2',
       '--samples_per_client=8', '--test_per_class=2', '--imbalance_ratio=2']
CSV = ['--dataset=latent_csv', '--data_path={tmp}/d.csv', '--num_clients=2',
       '--test_per_class=10', '--partition=iid']
NPZ = ['--dataset=latent_csv', '--data_path={tmp}/d.npz', '--num_clients=2',
       '--test_per_class=10', '--partition=iid']
IMG = ['--dataset=image_folder', '--data_dir={tmp}/img', '--image_size=4', '--num_clients=2',
       '--samples_per_client=20', '--test_per_class=10', '--partition=iid']
LONG = ['--rounds=100000', '--checkpoint_every=100000']
MEMORY_CAP = 4 << 30
# A stderr line that is not a run's progress: a log line above INFO, a traceback, an error.
NOT_PROGRESS = re.compile(r'^[WEF] \d\d:|Traceback|Exception|[Ee]rror|[Ww]arning')
# Root without the capabilities that ignore file modes (a mode-000 folder is unreadable).
BOUND_BY_MODES = ['setpriv', '--bounding-set=-dac_override,-dac_read_search']


class Case(NamedTuple):
  """One hostile case.

  command: main, sweep, report (python -m) or a console script (fedar-run, ...).
  args: after B for main/sweep; {tmp} is the case's folder, {w} its workdir.
  expect: the outcome that is right; fragment: text the one error line must hold.
  setup(tmp, run): builds files; `run(command, args)` runs a command that must succeed.
  check(tmp) -> problem or None, for `ran` (and a resumed `signal`).
  memory: run under RLIMIT_AS; env: extra environment; permissions: root runs it without
  the capabilities that override file permissions (`setpriv`), so a mode binds.
  stdout/stderr: 'full' (/dev/full) or 'closed'; signal: (signum, seconds after the
  start, or 'row': once metrics.csv holds a row); pipe: `2>&1 | head -1`.
  """
  name: str
  command: str
  args: tuple
  expect: str
  fragment: str = ''
  setup: Callable | None = None
  check: Callable | None = None
  memory: bool = False
  env: dict | None = None
  permissions: bool = False
  stdout: str = ''
  stderr: str = ''
  signal: tuple | None = None
  pipe: bool = False
  root: bool = False
  timeout: int = 0
  base: bool = True


# ---------------------------------------------------------------- files the cases read


def write_fer(tmp, edit=None, encoding='utf-8'):
  from fedar_jax.data.pattern_faces import write_fer2013_csv
  path = os.path.join(tmp, 'f.csv')
  write_fer2013_csv(path, seed=0, per_class=[20, 20], emotions=(3, 4))
  with open(path) as f:
    lines = f.read().splitlines()
  with open(path, 'w', encoding=encoding) as f:
    f.write('\n'.join(edit(lines) if edit else lines) + '\n')


def latent_rows(n=60, d=3, seed=0):
  rng = np.random.default_rng(seed)
  y = np.arange(n) % 2
  x = rng.normal(size=(n, d)) + y[:, None]
  return x, y


def write_csv(tmp, header=None, rows=None, encoding='utf-8'):
  if rows is None:
    x, y = latent_rows()
    header = ',' + ','.join(map(str, range(x.shape[1]))) + ',class'
    rows = [','.join([str(i), *(f'{v:.6f}' for v in x[i]), str(y[i])]) for i in range(len(y))]
  with open(os.path.join(tmp, 'd.csv'), 'w', encoding=encoding) as f:
    f.write('\n'.join([header, *rows]) + '\n')


def write_images(tmp, classes=('a', 'b'), n=60, bits=8):
  """n 4x4 grayscale PNGs per class: class j's pixels uniform in the j-th half of the
  value range (16-bit: 0-30000 and 35000-65535, so clipping to 255 makes all white)."""
  from PIL import Image
  rng = np.random.default_rng(0)
  top = 65535 if bits == 16 else 255
  ranges = [(0, int(top * 0.46)), (int(top * 0.54), top)]
  for j, k in enumerate(classes):
    os.makedirs(os.path.join(tmp, 'img', k))
    for i in range(n):
      low, high = ranges[j % 2]
      pixels = rng.integers(low, high + 1, size=(4, 4))
      image = Image.fromarray(pixels.astype(np.uint16 if bits == 16 else np.uint8))
      image.save(os.path.join(tmp, 'img', k, f'{i}.png'))


def write_npz(tmp, **arrays):
  np.savez(os.path.join(tmp, 'd.npz'), **arrays)


def npy_claiming(array, shape) -> bytes:
  """`array` as .npy bytes with its header rewritten to claim `shape`."""
  buf = io.BytesIO()
  np.save(buf, array)
  data = buf.getvalue()
  length = int.from_bytes(data[8:10], 'little')
  header = data[10:10 + length].decode('latin1').replace(repr(array.shape), repr(shape))
  return data[:10] + header.rstrip().ljust(length - 1).encode('latin1') + b'\n' + data[
      10 + length:]


def write_text(path, text, mode='w'):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, mode) as f:
    f.write(text)


METRICS = ('round,accuracy,gmean,recall_0,recall_1,train_loss,round_s\n'
           '1,0.5,0.5,0.5,0.5,0.7,0.01\n')
SWEEP_HEADER = ('imbalance_ratio,resampler,threshold,seed,learning_rate,data_seed,'
                'attacker_fraction,round,accuracy,gmean,recall_0,recall_1,round_s\n')


def report_files(name, text):
  return lambda tmp, run: write_text(os.path.join(tmp, 'w', name), text)


# ---------------------------------------------------------------- checks of a result


def metric_rows(tmp, workdir='w'):
  path = os.path.join(tmp, workdir, 'metrics.csv')
  if not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def rounds_done(n):
  def check(tmp):
    rows = metric_rows(tmp)
    if [int(r['round']) for r in rows] != list(range(1, n + 1)):
      return f'metrics.csv holds rounds {[r["round"] for r in rows]}, not 1..{n}'
    return None
  return check


def accuracy_at_least(level):
  def check(tmp):
    rows = metric_rows(tmp)
    if not rows or float(rows[-1]['accuracy']) < level:
      return f'final accuracy {rows[-1]["accuracy"] if rows else "missing"} < {level}'
    return None
  return check


def config_value(key, value):
  def check(tmp):
    with open(os.path.join(tmp, 'w', 'config.json')) as f:
      got = json.load(f).get(key)
    return None if got == value else f'config.json {key} is {got!r}, not {value!r}'
  return check


# ---------------------------------------------------------------- setups that run first


def resume_setup(first_args, tamper):
  """A first run (`first_args` after B) that must succeed, then `tamper(tmp)`."""
  def setup(tmp, run):
    run('main', [f'--workdir={tmp}/w', *first_args])
    tamper(tmp)
  return setup


def rewrite_csv(tmp):
  x, y = latent_rows()
  order = np.random.default_rng(1).permutation(len(y))
  rows = [','.join([str(i), *(f'{-v:.6f}' for v in x[j]), str(y[j])])
          for i, j in enumerate(order)]
  write_csv(tmp, ',0,1,2,class', rows)


def delete_config_key(key):
  def tamper(tmp):
    path = os.path.join(tmp, 'w', 'config.json')
    with open(path) as f:
      settings = json.load(f)
    del settings[key]
    with open(path, 'w') as f:
      json.dump(settings, f, indent=2)
  return tamper


def checkpoints_of_another_seed(tmp, run):
  run('main', [f'--workdir={tmp}/w1', '--seed=1'])
  shutil.copytree(os.path.join(tmp, 'w1', 'checkpoints'), os.path.join(tmp, 'w', 'checkpoints'))


def edit_checkpoint_rows(tmp):
  folder = os.path.join(tmp, 'w', 'checkpoints')
  step = max(os.listdir(folder), key=int)
  path = os.path.join(folder, step, 'rows', 'metadata')
  with open(path) as f:
    text = f.read()
  edited = re.sub(r'"1", "0\.\d+"', '"1", "0.999999"', text, count=1)
  assert edited != text, 'no row to edit'
  with open(path, 'w') as f:
    f.write(edited)


def entry_as_dir(name):
  return lambda tmp, run: os.makedirs(os.path.join(tmp, 'w', name))


def entry_as_file(name):
  return lambda tmp, run: write_text(os.path.join(tmp, 'w', name), '')


def mount_tmpfs(path, size, read_only=False):
  os.makedirs(path, exist_ok=True)
  options = f'size={size}' + (',ro' if read_only else '')
  subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', path], check=True)


def read_only_workdir(finished: str = ''):
  """{tmp}/ro: a read-only tmpfs, holding a finished run (`finished`: main or sweep) first."""
  def setup(tmp, run):
    ro = os.path.join(tmp, 'ro')
    mount_tmpfs(ro, '64m')
    if finished:
      run(finished, [f'--workdir={ro}'] + (['--thresholds=1,2'] if finished == 'sweep' else []))
    subprocess.run(['mount', '-o', 'remount,ro', ro], check=True)
  return setup


def read_only_cache(tmp, run):
  mount_tmpfs(os.path.join(tmp, 'ro'), '1m', read_only=True)


def small_disk(tmp, run):
  """{tmp}/w: a tmpfs the run's first files fit in, its checkpoints not."""
  mount_tmpfs(os.path.join(tmp, 'w'), '96k')


def unreadable_class_folder(tmp, run):
  write_images(tmp, n=30)
  os.chmod(os.path.join(tmp, 'img', 'b'), 0)


def nested(*builders):
  def setup(tmp, run):
    for build in builders:
      build(tmp, run)
  return setup


def symlink_loop(tmp, run):
  write_images(tmp)
  os.symlink('c', os.path.join(tmp, 'img', 'c'))


def fractional_pixel(lines):
  emotion, pixels, usage = lines[2].split(',')
  lines[2] = ','.join([emotion, '12.7 ' + pixels.split(' ', 1)[1], usage])
  return lines


def two_class_columns(tmp, run):
  x, y = latent_rows()
  rows = [','.join([str(i), *(f'{v:.6f}' for v in x[i]), str(y[i]), str(1 - y[i])])
          for i in range(len(y))]
  write_csv(tmp, ',0,1,2,class,class', rows)


def superscript_header(tmp, run):
  x, y = latent_rows()
  rows = [','.join([str(i), *(f'{v:.6f}' for v in x[i]), str(y[i])]) for i in range(len(y))]
  write_csv(tmp, ',0,1,\u00b2,class', rows)


def csv_value_1e39(tmp, run):
  x, y = latent_rows()
  rows = [','.join([str(i), *(f'{v:.6f}' for v in x[i]), str(y[i])]) for i in range(len(y))]
  rows[2] = '2,1e39,0.5,0.5,0'
  write_csv(tmp, ',0,1,2,class', rows)


def npz_header_32gb(tmp, run):
  with zipfile.ZipFile(os.path.join(tmp, 'd.npz'), 'w') as z:
    z.writestr('x.npy', npy_claiming(np.zeros((8, 2), np.float32), (1 << 30, 8)))
    z.writestr('y.npy', npy_claiming(np.arange(8) % 2, (8,)))


def flagfile(text: bytes):
  return lambda tmp, run: write_text(os.path.join(tmp, 'f.flags'), text, 'wb')


def finished_run(tmp, run):
  run('main', [f'--workdir={tmp}/w'])


# ---------------------------------------------------------------- the cases


def _r(name, command, args, fragment, **kw):
  return Case(name, command, tuple(args), 'refused', fragment, **kw)


CASES = [
    # Silent wrong results: values the float32 round turns into their bound.
    _r('trim_fraction_rounds_to_bound', 'main',
       ['--aggregator=trimmed_mean', '--trim_fraction=0.49999999'], '--trim_fraction'),
    _r('cb_beta_rounds_to_bound', 'main', ['--loss=class_balanced', '--cb_beta=0.99999999999'],
       '--cb_beta'),
    _r('server_beta1_rounds_to_bound', 'main',
       ['--server_optimizer=fedadam', '--server_beta1=0.99999999999'], '--server_beta1'),
    # Silent wrong results: data read other than written.
    _r('image_class_symlink_loop', 'main', IMG, 'img/c', setup=symlink_loop),
    Case('png_16_bit_scaled', 'main',
         tuple(IMG + ['--rounds=3', '--local_epochs=5', '--learning_rate=0.05']), 'ran',
         setup=lambda tmp, run: write_images(tmp, bits=16), check=accuracy_at_least(0.9)),
    _r('fer_fractional_pixel', 'main', FER + ['--model=cnn'], 'pixel value 12.7',
       setup=lambda tmp, run: write_fer(tmp, fractional_pixel)),
    _r('csv_two_class_columns', 'main', CSV, "column 'class' appears twice",
       setup=two_class_columns),
    Case('csv_byte_order_mark', 'main', tuple(CSV), 'ran', check=rounds_done(2),
         setup=lambda tmp, run: write_csv(tmp, encoding='utf-8-sig')),
    Case('fer_byte_order_mark', 'main', tuple(FER + ['--model=cnn', '--rounds=1']), 'ran',
         check=rounds_done(1), setup=lambda tmp, run: write_fer(tmp, encoding='utf-8-sig')),
    Case('flagfile_byte_order_mark', 'main', ('--flagfile={tmp}/f.flags',), 'ran',
         setup=flagfile('\ufeff--seed=3\n'.encode('utf-8')), check=config_value('seed', 3)),
    # Silent wrong results: flags that do nothing.
    _r('color_rgb_on_csv', 'main', CSV + ['--color=rgb'], '--color',
       setup=lambda tmp, run: write_csv(tmp)),
    _r('data_path_with_synthetic', 'main', ['--data_path={tmp}/x.csv'], '--data_path'),
    _r('attack_target_without_attackers', 'main', ['--attack_target=1'], '--attack_target'),
    _r('report_positional_argument', 'fedar-report', ['--workdir={w}', 'extra'],
       'unexpected arguments: extra', setup=report_files('metrics.csv', METRICS), base=False),
    # Silent wrong results: resume trusting what it finds.
    _r('resume_csv_rewritten', 'main', CSV + ['--rounds=4'], '--data_path: the data changed',
       setup=nested(lambda tmp, run: write_csv(tmp),
                    resume_setup(CSV, rewrite_csv))),
    _r('resume_config_seed_deleted', 'main', ['--seed=7'], 'seed',
       setup=resume_setup([], delete_config_key('seed'))),
    _r('resume_checkpoints_of_another_seed', 'main', ['--seed=0'], 'checkpoint',
       setup=checkpoints_of_another_seed),
    _r('resume_checkpoint_rows_edited', 'main', ['--rounds=3'], 'checkpoint',
       setup=resume_setup([], edit_checkpoint_rows)),
    # Interrupts: at moments of start-up and during a run.
    *[Case(f'fedar_run_sigint_{t}s', 'fedar-run', tuple(LONG), 'signal',
           signal=(signal.SIGINT, t)) for t in (0.2, 0.4, 0.6, 1.0, 2.0)],
    Case('fedar_run_sigterm_0.3s', 'fedar-run', tuple(LONG), 'signal',
         signal=(signal.SIGTERM, 0.3)),
    Case('main_sigint_0.4s', 'main', tuple(LONG), 'signal', signal=(signal.SIGINT, 0.4)),
    Case('fedar_sweep_sigint_0.5s', 'fedar-sweep', ('--thresholds=1,2', *LONG), 'signal',
         signal=(signal.SIGINT, 0.5)),
    Case('main_sigint_mid_run_then_resume', 'main', ('--rounds=300', '--checkpoint_every=1000'),
         'signal', signal=(signal.SIGINT, 'row'), check=rounds_done(300)),
    Case('fedar_run_sigterm_mid_run_then_resume', 'fedar-run',
         ('--rounds=300', '--checkpoint_every=1000'), 'signal', signal=(signal.SIGTERM, 'row'),
         check=rounds_done(300)),
    # Hangs and unbounded memory.
    _r('hidden_int32_max', 'main', ['--hidden=2147483647'], '--hidden', memory=True),
    _r('hidden_100000_100000', 'main', ['--hidden=100000,100000'], '--hidden', memory=True),
    _r('cnn_latent_dim_int32_max', 'main', FER + ['--model=cnn', '--latent_dim=2147483647'],
       '--latent_dim', memory=True, setup=lambda tmp, run: write_fer(tmp)),
    _r('cnn_image_size_4096_fer', 'main', FER + ['--model=cnn', '--image_size=4096'],
       '--image_size', memory=True, setup=lambda tmp, run: write_fer(tmp)),
    _r('coordinator_unreachable', 'main', ['--coordinator_address=localhost:1',
                                           '--num_processes=2'],
       '--coordinator_address', timeout=300),
    _r('flagfile_dev_zero', 'main', ['--flagfile=/dev/zero'], '/dev/zero', memory=True),
    _r('cpu_devices_512', 'main', ['--cpu_devices=512'], '--cpu_devices'),
    _r('cpu_devices_beside_xla_flags', 'sweep', ['--cpu_devices=2', '--thresholds=1,2'],
       '--cpu_devices', env={'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}),
    # Tracebacks and noise: data files.
    _r('csv_superscript_header', 'main', CSV, '\u00b2', setup=superscript_header),
    _r('npz_no_feature_values', 'main', NPZ, 'no feature values',
       setup=lambda tmp, run: write_npz(tmp, x=np.zeros((800, 0)), y=np.arange(800) % 2)),
    _r('npz_header_claims_32gb', 'main', NPZ, 'd.npz', memory=True, setup=npz_header_32gb),
    _r('image_unreadable_class_folder', 'main', IMG, 'img/b', permissions=True, root=True,
       setup=unreadable_class_folder),
    _r('flagfile_binary', 'main', ['--flagfile={tmp}/f.flags'], 'f.flags',
       setup=flagfile(b'--seed=1\n\x89PNG\r\n\x1a\n\x00\x00')),
    _r('csv_value_1e39', 'main', CSV, 'd.csv', setup=csv_value_1e39),
    _r('npz_complex', 'main', NPZ, 'complex',
       setup=lambda tmp, run: write_npz(tmp, x=np.ones((60, 2)) * (1 + 2j),
                                        y=np.arange(60) % 2)),
    # Tracebacks and noise: workdirs and caches.
    _r('workdir_in_proc', 'main', ['--workdir=/proc/fedar_w'], '/proc/fedar_w'),
    _r('workdir_in_sys', 'main', ['--workdir=/sys/fedar_w'], '/sys/fedar_w'),
    _r('workdir_name_300_chars', 'main', ['--workdir={tmp}/' + 'w' * 300], 'File name too long'),
    _r('sweep_workdir_name_300_chars', 'sweep', ['--workdir={tmp}/' + 'w' * 300,
                                                 '--thresholds=1,2'], 'File name too long'),
    _r('compilation_cache_dir_uncreatable', 'main', ['--compilation_cache_dir=/proc/fedar_c'],
       '--compilation_cache_dir'),
    _r('xdg_cache_home_uncreatable', 'main', [], '--compilation_cache_dir',
       env={'XDG_CACHE_HOME': '/proc/fedar_xdg'}),
    *[_r(f'{n}_is_a_directory', 'main', [], n, setup=entry_as_dir(n))
      for n in ('metrics.csv', 'summary.json', 'partition.json', 'lock')],
    *[_r(f'{n}_is_a_file', 'main', [], n, setup=entry_as_file(n)) for n in ('plots', 'tb')],
    _r('read_only_workdir', 'main', ['--workdir={tmp}/ro'], '{tmp}/ro', root=True,
       setup=read_only_workdir()),
    _r('read_only_workdir_parent', 'main', ['--workdir={tmp}/ro/sub'], '{tmp}/ro/sub', root=True,
       setup=read_only_workdir()),
    _r('read_only_workdir_sweep', 'sweep', ['--workdir={tmp}/ro', '--thresholds=1,2'], '{tmp}/ro',
       root=True, setup=read_only_workdir()),
    _r('read_only_workdir_finished_run', 'main', ['--workdir={tmp}/ro'], '{tmp}/ro', root=True,
       setup=read_only_workdir('main')),
    _r('read_only_workdir_finished_sweep', 'sweep', ['--workdir={tmp}/ro', '--thresholds=1,2'],
       '{tmp}/ro', root=True, setup=read_only_workdir('sweep')),
    _r('read_only_workdir_report', 'fedar-report', ['--workdir={tmp}/ro'], '{tmp}/ro', root=True,
       setup=read_only_workdir('main'), base=False),
    _r('read_only_compilation_cache_dir', 'main', ['--compilation_cache_dir={tmp}/ro'],
       '--compilation_cache_dir', root=True, setup=read_only_cache),
    # Tracebacks and noise: fedar-report on empty, ragged or corrupt files.
    *[_r(f'report_{name}', 'fedar-report', ['--workdir={w}'], fragment, base=False,
         setup=report_files(file, text)) for name, file, text, fragment in [
        ('empty_metrics', 'metrics.csv', '', 'metrics.csv: empty'),
        ('ragged_metrics', 'metrics.csv', METRICS + '2,0.5\n', 'metrics.csv, line 3'),
        ('bad_cell_metrics', 'metrics.csv', METRICS + '2,0.5,zz,0.5,0.5,0.7,0.01\n',
         'metrics.csv, line 3'),
        ('empty_sweep', 'sweep.csv', '', 'sweep.csv: empty'),
        ('ragged_sweep', 'sweep.csv', SWEEP_HEADER + '2,smote,1.5,0,0.001,0,0,1,0.5\n',
         'sweep.csv, line 2'),
        ('bad_cell_sweep', 'sweep.csv',
         SWEEP_HEADER + '2,smote,1.5,0,0.001,0,0,1,0.5,nope,0.5,0.5,0.1\n', 'sweep.csv, line 2'),
    ]],
    # Tracebacks and noise: the disk and the standard streams.
    Case('disk_full_during_checkpoint', 'main', ('--rounds=2',), 'fault', 'disk full',
         setup=small_disk, root=True),
    Case('stdout_dev_full', 'main', (), 'fault', 'error: stdout: cannot write', stdout='full',
         check=rounds_done(2)),
    Case('stdout_closed', 'main', (), 'ran', stdout='closed', check=rounds_done(2)),
    Case('stderr_dev_full', 'main', (), 'ran', stderr='full', check=rounds_done(2)),
    Case('stderr_closed', 'main', (), 'ran', stderr='closed', check=rounds_done(2)),
    Case('fedar_run_into_head_1_then_rerun', 'fedar-run', (), 'ran', pipe=True,
         check=rounds_done(2)),
]
QUICK = ('trim_fraction_rounds_to_bound', 'color_rgb_on_csv', 'flagfile_dev_zero',
         'report_empty_metrics', 'workdir_in_proc', 'fedar_run_sigint_0.4s')


# ---------------------------------------------------------------- running a case


def scripts() -> dict:
  """console script name -> 'module:function', as pyproject.toml declares them."""
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)['project']['scripts']


def argv(case: Case, tmp: str, cache: str) -> list:
  """The command line of `case` (a console script runs its declared entry point, as the
  installed script does)."""
  command = case.command
  if command.startswith('fedar-'):
    module, function = scripts()[command].split(':')
    head = [sys.executable, '-c',
            f'import sys; from {module} import {function}; sys.exit({function}())']
    kind = {'fedar-run': 'main', 'fedar-sweep': 'sweep'}.get(command, 'report')
  else:
    head, kind = [sys.executable, '-m', f'fedar_jax.{command}'], command
  args = [a.replace('{tmp}', tmp).replace('{w}', os.path.join(tmp, 'w')) for a in case.args]
  extra = []
  if not any(a.startswith('--workdir=') for a in args):
    extra.append(f'--workdir={os.path.join(tmp, "w")}')
  if kind != 'report':
    if case.base:
      extra = extra + B
    if cache and not any(a.startswith('--compilation_cache_dir') for a in args) and (
        not case.env or 'XDG_CACHE_HOME' not in case.env):
      extra.append(f'--compilation_cache_dir={cache}')
  return head + extra + args


def listing(path):
  if not os.path.isdir(path):
    return None if not os.path.lexists(path) else ('file', os.path.getsize(path))
  return sorted((os.path.relpath(os.path.join(d, n), path),
                 os.path.getsize(os.path.join(d, n)) if n in files else -1)
                for d, dirs, files in os.walk(path) for n in dirs + files)


def workdir_of(command_line: list) -> str:
  return next(a.split('=', 1)[1] for a in command_line if a.startswith('--workdir='))


def classify(rc, stderr: str, timed_out: bool, case: Case) -> tuple[str, str]:
  """(outcome, note) of one command's end."""
  lines = [line for line in stderr.splitlines() if line.strip()]
  last = lines[-1] if lines else ''
  if timed_out:
    return 'hang', last
  if 'Traceback' in stderr or 'Exception ignored' in stderr:
    return 'noise', f'rc {rc}, {len(lines)} lines: {last}'
  others = [line for line in lines[:-1] if NOT_PROGRESS.search(line)]
  if rc in (130, 143):  # The progress lines a run printed come first.
    if last.startswith('interrupted') and not others:
      return 'signal', last
    return 'noise', f'rc {rc}, {len(lines)} lines: {(others or [last])[0]}'
  if rc == 2 and len(lines) == 1 and lines[0].startswith('error: '):
    return 'refused', lines[0]
  if rc == 1 and last.startswith('error: ') and not others:
    return 'fault', last
  if rc == 0:
    return 'ran', ''
  if len(lines) > 1:
    return 'noise', f'rc {rc}, {len(lines)} lines: {last}'
  return 'wrong', f'rc {rc}: {last}'


def memory_cap() -> None:
  resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def environment(case: Case, tmp: str) -> dict:
  env = {**os.environ, 'PYTHONPATH': ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')}
  return {**env, **(case.env or {})}


def start(case: Case, command_line: list, tmp: str, **streams):
  return subprocess.Popen(command_line, cwd=ROOT, env=environment(case, tmp), text=True,
                          start_new_session=True,
                          preexec_fn=memory_cap if case.memory else None, **streams)


def finish(proc, timeout: float):
  """(rc, stderr, timed out) of `proc`, killed with its group at `timeout`."""
  try:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err or '', False
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    return proc.returncode, err or '', True


def stream(kind: str):
  if kind == 'full':
    return open('/dev/full', 'w')
  return subprocess.DEVNULL


def run_command(case: Case, command_line: list, tmp: str, timeout: float):
  """Runs the case's command its way; (rc, stderr, timed out)."""
  if case.stdout == 'closed' or case.stderr == 'closed':
    # A closed descriptor: the shell's `>&-` / `2>&-` on the child.
    which = '1' if case.stdout == 'closed' else '2'
    quoted = shlex.join(command_line)
    shell = f'exec {quoted} {which}>&-'
    proc = start(case, ['/bin/sh', '-c', shell], tmp, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE if which == '1' else subprocess.DEVNULL)
    return finish(proc, timeout)
  if case.pipe:
    quoted = shlex.join(command_line)
    proc = start(case, ['/bin/bash', '-c', f'{quoted} 2>&1 | head -1 >/dev/null; '
                        'exit ${PIPESTATUS[0]}'], tmp, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
    rc, err, timed_out = finish(proc, timeout)
    if timed_out:
      return rc, err, timed_out
    return finish(start(case, command_line, tmp, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE), timeout)  # The rerun must finish the run.
  out = stream(case.stdout) if case.stdout else subprocess.DEVNULL
  err = stream(case.stderr) if case.stderr else subprocess.PIPE
  proc = start(case, command_line, tmp, stdout=out, stderr=err)
  if case.signal:
    signum, when = case.signal
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
      if when == 'row' and len(metric_rows(tmp)) >= 1:
        break
      if when != 'row' and time.monotonic() - t0 >= when:
        break
      time.sleep(0.01)
    if proc.poll() is None:
      proc.send_signal(signum)
  return finish(proc, timeout)


def run_case(case: Case, parent: str, cache: str, timeout: float) -> tuple[str, str, float]:
  """(outcome, note, seconds) of one case in a fresh folder under `parent`."""
  tmp = tempfile.mkdtemp(prefix=case.name[:40] + '-', dir=parent)

  def run(command, args):
    line = argv(Case('setup', command, tuple(args), 'ran'), tmp, cache)
    done = subprocess.run(line, cwd=ROOT, env=environment(case, tmp), capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode:
      raise RuntimeError(f'setup {command} exit {done.returncode}: {done.stderr[-300:]}')

  t0 = time.monotonic()
  try:
    if case.setup:
      case.setup(tmp, run)
    line = argv(case, tmp, cache)
    workdir = workdir_of(line)
    if case.permissions:
      line = BOUND_BY_MODES + line
    before = listing(workdir)
    rc, stderr, timed_out = run_command(case, line, tmp, case.timeout or timeout)
    outcome, note = classify(rc, stderr, timed_out, case)
    fragment = case.fragment.replace('{tmp}', tmp)
    if outcome in ('refused', 'fault') and fragment not in note:
      outcome, note = 'wrong', f'line lacks {fragment!r}: {note}'
    elif outcome == 'refused' and listing(workdir) != before:
      outcome, note = 'wrong', f'refused, but {workdir} changed: {note}'
    elif outcome == 'signal' and case.check:  # Resumed by the same command.
      rc, stderr, timed_out = run_command(case._replace(signal=None), line, tmp,
                                          case.timeout or timeout)
      rerun, rerun_note = classify(rc, stderr, timed_out, case)
      problem = case.check(tmp) if rerun == 'ran' else f'rerun: {rerun} {rerun_note}'
      if problem:
        outcome, note = 'wrong', problem
    elif outcome in ('ran', 'fault') and case.check:
      problem = case.check(tmp)
      if problem:
        outcome, note = 'wrong', problem
  except Exception as e:  # A setup that failed is the case failing, not the check.
    outcome, note = 'wrong', f'{type(e).__name__}: {str(e)[:200]}'
  finally:
    for path in (os.path.join(tmp, 'ro'), os.path.join(tmp, 'w')):
      if os.path.ismount(path):
        subprocess.run(['umount', '-l', path], capture_output=True)
  return outcome, note.replace(tmp, '{tmp}'), time.monotonic() - t0


def selected(args) -> list[Case]:
  cases = [c for c in CASES if not args.quick or c.name in QUICK]
  if args.cases:
    wanted = args.cases.split(',')
    cases = [c for c in cases if any(w in c.name for w in wanted)]
  return cases


def main(argv_=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--cases', default='', help='comma-separated substrings of case names')
  parser.add_argument('--quick', action='store_true', help=f'only {", ".join(QUICK)}')
  parser.add_argument('--timeout', type=float, default=120, help='seconds per command')
  parser.add_argument('--keep', action='store_true', help='keep the cases\' folders')
  args = parser.parse_args(argv_)
  cases = selected(args)
  root = os.geteuid() == 0
  parent = tempfile.mkdtemp(prefix='hostile-')
  cache = os.path.join(parent, 'cache')
  counts, unexpected = collections.Counter(), []
  try:
    for case in cases:
      if case.root and not root:
        counts['root-only'] += 1
        print(f'{case.name:42s} {"-":8s} {"root-only":8s}      needs root', flush=True)
        continue
      outcome, note, seconds = run_case(case, parent, cache, args.timeout)
      counts[outcome] += 1
      mark = '' if outcome == case.expect else f'  EXPECTED {case.expect}'
      if mark:
        unexpected.append(case.name)
      print(f'{case.name:42s} {case.expect:8s} {outcome:8s} {seconds:5.0f}s {note[:300]}{mark}',
            flush=True)
  finally:
    if not args.keep:
      shutil.rmtree(parent, ignore_errors=True)
  print(f'{len(cases)} cases: ' + ', '.join(f'{k} {v}' for k, v in sorted(counts.items())))
  if unexpected:
    print(f'not as expected ({len(unexpected)}): {", ".join(unexpected)}')
  return 1 if unexpected else 0


if __name__ == '__main__':
  sys.exit(main())
