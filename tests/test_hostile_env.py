"""Nothing silent, nothing hangs: flags that do nothing, joins that never complete, and
workdir, cache and report files the commands cannot use each end with one line naming
the flag or path, exit status 2, and nothing written.

Table-driven, end to end through the commands (small shapes; the join with a time limit).
"""
import os
import shutil
import subprocess
import sys

from absl import flags
import pytest

from fedar_jax import cli
from fedar_jax import flag_use
from fedar_jax.config import ConfigError
from fedar_jax.sweep_axes import SWEEP_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ['--rounds=1', '--num_clients=2', '--samples_per_client=20', '--test_per_class=5',
         '--feature_dim=4', '--local_epochs=1', '--hidden=2']
METRICS = ('round,accuracy,gmean,recall_0,recall_1,train_loss,round_s\n'
           '1,0.5,0.5,0.5,0.5,0.7,0.01\n')
SWEEP_HEADER = ('imbalance_ratio,resampler,threshold,seed,learning_rate,data_seed,'
                'attacker_fraction,round,accuracy,gmean,recall_0,recall_1,round_s\n')


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(text.encode('latin-1'))  # '\xff': a byte that is not UTF-8.


def _entry_as_dir(name):
  return lambda w: os.makedirs(os.path.join(w, name))


def _entry_as_file(name):
  return lambda w: _write(os.path.join(w, name), '')


def _run_files(w, metrics=METRICS):
  _write(os.path.join(w, 'metrics.csv'), metrics)


def _sweep_files(w, text):
  _write(os.path.join(w, 'sweep.csv'), text)


# (id, command, arguments ({w}: the workdir, {tmp}: the test's folder), environment,
#  the workdir's setup, a fragment of the one error line).
CASES = [
    # Flags that do nothing.
    ('color_on_csv', 'main', ['--color=rgb'], {}, None,
     '--color: rgb does nothing here: the flag applies to image sources only'),
    ('data_path_synthetic', 'main', ['--data_path={tmp}/x.csv'], {}, None,
     '--data_path: {tmp}/x.csv does nothing here'),
    ('attack_target_no_attackers', 'main', ['--attack_target=1'], {}, None,
     '--attack_target: 1 does nothing here: the flag applies to skew or scale attackers'),
    ('attack_target_label_flip', 'main',
     ['--attack_target=1', '--attacker_fraction=0.5', '--attack=label_flip'], {}, None,
     '--attack_target: 1 does nothing here'),
    ('attack_ratio_no_attackers', 'sweep', ['--attack_ratio=5', '--thresholds=1.5,3'], {}, None,
     '--attack_ratio: 5.0 does nothing here: the flag applies to skew attackers only'),
    ('coordinator_timeout_one_process', 'main', ['--coordinator_timeout_s=5'], {}, None,
     '--coordinator_timeout_s: 5 does nothing here'),
    ('report_positional', 'report', ['extra'], {}, _run_files,
     'unexpected arguments: extra'),
    # A join that never completes.
    ('join_times_out', 'main', ['--coordinator_address=localhost:1', '--num_processes=2',
                                '--process_id=1', '--coordinator_timeout_s=3'], {}, None,
     '--coordinator_address: the 2 processes did not all join at localhost:1 within 3 s'),
    # Workdirs and caches that cannot be written.
    ('workdir_in_proc', 'main', ['--workdir=/proc/fedar_w'], {}, None,
     "--workdir: '/proc/fedar_w' cannot be written"),
    ('workdir_in_sys', 'main', ['--workdir=/sys/fedar_w'], {}, None,
     "--workdir: '/sys/fedar_w' cannot be written"),
    ('workdir_name_too_long', 'main', ['--workdir={tmp}/' + 'w' * 300], {}, None,
     'cannot be written (File name too long)'),
    ('sweep_workdir_name_too_long', 'sweep', ['--workdir={tmp}/' + 'w' * 300], {}, None,
     'cannot be written (File name too long)'),
    ('cache_in_proc', 'main', ['--compilation_cache_dir=/proc/fedar_cache'], {}, None,
     "--compilation_cache_dir: '/proc/fedar_cache' cannot be made"),
    ('xdg_cache_in_proc', 'main', [], {'XDG_CACHE_HOME': '/proc/fedar_xdg'}, None,
     "--compilation_cache_dir: '/proc/fedar_xdg/fedar_jax/jax' cannot be made"),
    # Workdir entries of the wrong type.
    *[(f'{name}_is_a_dir', 'main', [], {}, _entry_as_dir(name),
       f"{name}' exists and is not a regular file")
      for name in ('metrics.csv', 'summary.json', 'partition.json', 'lock')],
    ('sweep_csv_is_a_dir', 'sweep', [], {}, _entry_as_dir('sweep.csv'),
     "sweep.csv' exists and is not a regular file"),
    *[(f'{name}_is_a_file', 'main', [], {}, _entry_as_file(name),
       f"{name}' exists and is not a directory") for name in ('plots', 'tb')],
    ('report_plots_is_a_file', 'report', [], {},
     lambda w: (_run_files(w), _entry_as_file('plots')(w)), "plots: exists and is not a directory"),
    # fedar-report on empty, ragged or corrupt files.
    ('report_empty_metrics', 'report', [], {}, lambda w: _run_files(w, ''),
     'metrics.csv: empty (no header line)'),
    ('report_ragged_metrics', 'report', [], {}, lambda w: _run_files(w, METRICS + '2,0.5\n'),
     'metrics.csv, line 3: 2 cells, the header has 7'),
    ('report_bad_cell_metrics', 'report', [], {},
     lambda w: _run_files(w, METRICS + '2,0.5,zz,0.5,0.5,0.7,0.01\n'),
     "metrics.csv, line 3: gmean is 'zz', not a number"),
    ('report_metrics_not_utf8', 'report', [], {},
     lambda w: _run_files(w, METRICS + '2,0.5,\xff,0.5,0.5,0.7,0.01\n'),
     'metrics.csv: not UTF-8 text'),
    ('report_empty_sweep', 'report', [], {}, lambda w: _sweep_files(w, ''),
     'sweep.csv: empty (no header line)'),
    ('report_ragged_sweep', 'report', [], {},
     lambda w: _sweep_files(w, SWEEP_HEADER + '2,smote,1.5,0,0.001,0,0,1,0.5\n'),
     'sweep.csv, line 2: 9 cells, the header has 13'),
    ('report_bad_cell_sweep', 'report', [], {},
     lambda w: _sweep_files(w, SWEEP_HEADER + '2,smote,1.5,0,0.001,0,0,1,0.5,nope,0.5,0.5,0.1\n'),
     "sweep.csv, line 2: gmean is 'nope', not a number"),
]


def _listing(path):
  if not os.path.isdir(path):
    return None
  return sorted((os.path.relpath(os.path.join(d, n), path), os.path.getsize(os.path.join(d, n)))
                for d, dirs, files in os.walk(path) for n in dirs + files)


def _command(command, args, workdir, cache):
  module = {'main': 'fedar_jax.main', 'sweep': 'fedar_jax.sweep', 'report': 'fedar_jax.report'}
  argv = [sys.executable, '-m', module[command]]
  if not any(a.startswith('--workdir=') for a in args):
    argv.append(f'--workdir={workdir}')
  if command != 'report':
    argv += SMALL
    if not any(a.startswith('--compilation_cache_dir=') for a in args) and cache:
      argv.append(f'--compilation_cache_dir={cache}')
  return argv + args


def _one_error_line(argv, env, fragment, timeout=120):
  out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
  assert len(lines) == 1 and lines[0].startswith('error: '), out.stderr[-2000:]
  assert fragment in lines[0], lines[0]
  return lines[0]


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_one_line_exit_2_nothing_written(tmp_path, case):
  _, command, args, extra_env, setup, fragment = case
  workdir = str(tmp_path / 'w')
  if setup:
    os.makedirs(workdir)
    setup(workdir)
  before = _listing(workdir)
  args = [a.replace('{tmp}', str(tmp_path)) for a in args]
  env = {**os.environ, 'PYTHONPATH': ROOT, **extra_env}
  cache = '' if 'XDG_CACHE_HOME' in extra_env else str(tmp_path / 'cache')
  _one_error_line(_command(command, args, workdir, cache), env,
                  fragment.replace('{tmp}', str(tmp_path)))
  assert _listing(workdir) == before


def _read_only_dir(tmp_path):
  """A folder no one (root included) can write in: a read-only tmpfs for root, mode 0555
  otherwise."""
  path = tmp_path / 'ro'
  path.mkdir()
  if os.geteuid() != 0:
    path.chmod(0o555)
    return path, lambda: path.chmod(0o755)
  if shutil.which('mount') is None or subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', str(path)],
      capture_output=True).returncode != 0:
    pytest.skip('root without permission to mount a read-only tmpfs')
  return path, lambda: subprocess.run(['umount', str(path)], check=True)


@pytest.mark.parametrize('command,where,fragment', [
    ('main', 'w', "--workdir: '{ro}' cannot be written (Read-only file system"),
    ('main', 'w/sub', "--workdir: '{ro}/sub' cannot be written (Read-only file system"),
    ('sweep', 'w', "--workdir: '{ro}' cannot be written (Read-only file system"),
    ('main', 'cache', "--compilation_cache_dir: '{ro}' cannot be written"),
])
def test_read_only_paths(tmp_path, command, where, fragment):
  ro, release = _read_only_dir(tmp_path)
  if os.geteuid() != 0:
    fragment = fragment.replace('Read-only file system', 'Permission denied')
  try:
    workdir = {'w': str(ro), 'w/sub': str(ro / 'sub'), 'cache': str(tmp_path / 'w')}[where]
    cache = str(ro) if where == 'cache' else str(tmp_path / 'cache')
    env = {**os.environ, 'PYTHONPATH': ROOT}
    _one_error_line(_command(command, [], workdir, cache), env, fragment.replace('{ro}', str(ro)))
    assert os.listdir(ro) == [] and not os.path.exists(tmp_path / 'w')
  finally:
    release()


def _preset_flags(path):
  values = flags.FlagValues()
  cli.define_config_flags(values)
  for name, entry in SWEEP_FLAGS.items():
    flags.DEFINE_list(name, [], entry.help, flag_values=values)
  for name in ('workdir', 'compilation_cache_dir'):
    flags.DEFINE_string(name, '', name, flag_values=values)
  values(['test', f'--flagfile={path}'])
  return values


PRESETS = sorted(os.path.join(d, n) for d in ('experiments', 'experiments/paper')
                 for n in os.listdir(os.path.join(ROOT, d)) if n.endswith('.flags'))


@pytest.mark.parametrize('preset', PRESETS)
def test_presets_give_no_idle_flag(preset):
  from fedar_jax import sweep
  values = _preset_flags(os.path.join(ROOT, preset))
  base = cli.config_from_flags(values, host_memory=False)
  cli.refuse_idle_flags(base, values, sweep.sweep_lists(values, base, host_memory=False))


def test_attack_flags_apply_with_a_swept_attacker_fraction():
  values = _preset_flags(os.path.join(ROOT, 'experiments/paper/attack_study_cpu.flags'))
  base = cli.config_from_flags(values, host_memory=False)
  with pytest.raises(ConfigError, match='--attack_target: 0 does nothing here'):
    cli.refuse_idle_flags(base, values, {})  # Without the sweep's attacker fractions.


def test_every_idle_rule_names_a_flag():
  values = flags.FlagValues()
  cli.define_config_flags(values)
  assert set(flag_use.APPLIES) <= set(values)


def test_report_into_a_full_stdout_names_stdout_not_the_workdir(tmp_path):
  _run_files(str(tmp_path / 'w'))
  with open('/dev/full', 'w') as full:
    out = subprocess.run([sys.executable, '-m', 'fedar_jax.report', f'--workdir={tmp_path / "w"}'],
                         stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, 'PYTHONPATH': ROOT}, timeout=120)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 1 and lines == [
      'error: stdout: cannot write (No space left on device); wrote '
      f'{tmp_path / "w" / "plots" / "metrics_per_round.png"}'], out.stderr[-2000:]


@pytest.mark.parametrize('module', ['main', 'report', 'population'])
def test_help_into_a_full_stdout_is_one_line(module):
  # `| head` stays quiet (tests/test_docs_flags.py); a full device is said, exit 1.
  with open('/dev/full', 'w') as full:
    out = subprocess.run([sys.executable, '-m', f'fedar_jax.{module}', '--help'], stdout=full,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, 'PYTHONPATH': ROOT}, timeout=120)
  assert out.returncode == 1 and out.stderr.splitlines() == [
      'error: stdout: cannot write (No space left on device); the help was not shown'], (
          out.stderr[-2000:])


# Under std_streams.guard(): a write to a full stdout is dropped and reported once; a file
# opened after the standard descriptors were closed does not take their numbers.
GUARDED = '''
import os, sys
from fedar_jax import std_streams
std_streams.guard()
print('dropped' * 10000, flush=True)
with open(sys.argv[1], 'w') as f:
  f.write(str(f.fileno()))
print('a line', file=sys.stderr)
std_streams.exit_if_stdout_lost('done')
'''


@pytest.mark.parametrize('redirect, rc, err', [
    ('<&- >&- 2>&-', 0, ''),
    ('>/dev/full', 1, 'a line\nerror: stdout: cannot write (No space left on device); done\n'),
    ('2>/dev/full', 0, ''),
])
def test_closed_or_full_standard_streams_do_not_stop_a_command(tmp_path, redirect, rc, err):
  script, record = tmp_path / 'guarded.py', tmp_path / 'fd'
  script.write_text(GUARDED)
  out = subprocess.run(['/bin/sh', '-c', f'exec "$0" "$1" "$2" {redirect} 3>&- ',
                        sys.executable, str(script), str(record)], cwd=ROOT, timeout=60,
                       env={**os.environ, 'PYTHONPATH': ROOT},
                       stderr=None if '2>' in redirect else subprocess.PIPE, text=True)
  assert out.returncode == rc, out.stderr
  assert int(record.read_text()) > 2
  if '2>' not in redirect:
    assert out.stderr == err
