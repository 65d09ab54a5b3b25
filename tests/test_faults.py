"""Faults: the workdir lock, signals, unreadable checkpoints, lost CSVs, a full disk.

Each resumed run must equal an uninterrupted one in every column except the
timing column `round_s`. Signals at a chosen round are sent by the process to
itself (in-process, deterministic); two CLI runs cover a real second process
and a signal at a random moment.
"""
import errno
import glob
import io
import os
import random
import signal
import subprocess
import sys
import time
import types

from absl import flags
import jax
from jax.experimental.compilation_cache import compilation_cache
import pytest

from fedar_jax import checkpoint
from fedar_jax import fedar_round
from fedar_jax import std_streams
from fedar_jax import interrupts
from fedar_jax import cli
from fedar_jax import sweep_runner
from fedar_jax import loop
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import ConfigError
from tests.test_checkpoint import ROOT, RUN, _rows

ROUNDS = 7
FLAGS = RUN + [f'--rounds={ROUNDS}', '--checkpoint_every=3', '--keep_checkpoints=3']


def _config(args):
  values = flags.FlagValues()
  cli.define_config_flags(values)
  values(['prog', *args])
  return cli.config_from_flags(values)


CFG = _config(FLAGS)


@pytest.fixture(scope='module', autouse=True)
def compiled_once(tmp_path_factory):
  """A persistent compilation cache for this module: every run here compiles the same round,
  so only the first compile is paid (the rest read it back in ~2s instead of ~20s)."""
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  cache = str(tmp_path_factory.mktemp('jax_cache'))
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  compilation_cache.reset_cache()
  yield {**os.environ, 'JAX_COMPILATION_CACHE_DIR': cache,  # For CLI runs of the same round.
         'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0'}
  jax.config.update('jax_compilation_cache_dir', old[0])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', old[1])
  compilation_cache.reset_cache()


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """metrics.csv rows (without round_s) of the uninterrupted run."""
  workdir = tmp_path_factory.mktemp('ref')
  loop.train_and_evaluate(CFG, str(workdir))
  rows = _rows(workdir / 'metrics.csv')
  assert len(rows) == ROUNDS and len({r['gmean'] + r['train_loss'] for r in rows}) > 3
  return rows


def _signal_at_round(monkeypatch, signum, at_round):
  """Makes the run send `signum` to itself while round `at_round` is being written."""
  csv_rows = loop.csv_rows

  sent = []

  def rows(first, outs, *args):  # Rows of a compiled call of len(outs.metrics['gmean']) rounds.
    if first <= at_round < first + len(outs.metrics['gmean']) and not sent:  # Once.
      sent.append(os.kill(os.getpid(), signum))
    return csv_rows(first, outs, *args)
  monkeypatch.setattr(loop, 'csv_rows', rows)
  monkeypatch.setattr(loop, 'CALL_SECONDS', 0.0)  # One round per call: stops at at_round.


def _corrupt(step_dir):
  """Truncates every array file of a checkpoint step."""
  files = [f for f in glob.glob(f'{step_dir}/**/d/*', recursive=True) if os.path.isfile(f)]
  assert files
  for f in files:
    with open(f, 'r+b') as fh:
      fh.truncate(2)


def test_sigterm_ends_after_the_round_with_its_checkpoint_then_resumes(
    tmp_path, monkeypatch, capsys, reference):
  workdir = str(tmp_path / 'w')
  _signal_at_round(monkeypatch, signal.SIGTERM, 4)
  with pytest.raises(SystemExit) as e:
    with cli.faults_reported(workdir):
      loop.train_and_evaluate(CFG, workdir)
  assert e.value.code == 143
  assert capsys.readouterr().err.splitlines()[-1] == (
      'interrupted after round 4; rerun the same command to resume')
  assert checkpoint.latest_step(os.path.join(workdir, 'checkpoints')) == 4  # Off the cadence of 3.
  assert len(_rows(os.path.join(workdir, 'metrics.csv'))) == 4
  assert signal.getsignal(signal.SIGTERM) is not interrupts._handler  # Handlers restored.
  monkeypatch.undo()
  loop.train_and_evaluate(CFG, workdir)
  assert _rows(os.path.join(workdir, 'metrics.csv')) == reference


def test_unreadable_newest_checkpoint_and_corrupt_metrics_are_recovered(tmp_path, reference,
                                                                        caplog):
  workdir = tmp_path / 'w'
  loop.train_and_evaluate(CFG.replace(rounds=5, checkpoint_every=2), str(workdir))
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4', '5']
  _corrupt(workdir / 'checkpoints' / '5')
  # metrics.csv truncated mid-file and garbled: rewritten from the checkpoint's rows.
  (workdir / 'metrics.csv').write_bytes((workdir / 'metrics.csv').read_bytes()[:150]
                                        + b'\x00\xff,,garbage\n')
  loop.train_and_evaluate(CFG.replace(checkpoint_every=2), str(workdir))
  assert 'checkpoint' in caplog.text and 'does not read back' in caplog.text
  assert (workdir / 'checkpoints' / 'unreadable-5').is_dir()
  assert _rows(workdir / 'metrics.csv') == reference


def test_disk_full_is_one_line_and_the_rerun_resumes(tmp_path, monkeypatch, capsys, reference):
  workdir = str(tmp_path / 'w')
  save = checkpoint.Checkpoints.save

  def full_at_6(self, state, metrics, rows=()):
    if len(rows) == 6:
      raise ValueError('RESOURCE_EXHAUSTED: write failed [OS error: No space left on device]')
    return save(self, state, metrics, rows)
  monkeypatch.setattr(checkpoint.Checkpoints, 'save', full_at_6)
  with pytest.raises(SystemExit) as e:
    with cli.faults_reported(workdir):
      loop.train_and_evaluate(CFG, workdir)
  assert e.value.code == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1] == (f'error: {workdir}: disk full (ValueError) after round 3; free space and '
                     'rerun the same command to resume')
  monkeypatch.undo()
  with pytest.raises(SystemExit):
    with cli.faults_reported(workdir):
      raise OSError(errno.ENOSPC, 'No space left on device')
  assert 'disk full (OSError)' in capsys.readouterr().err
  with pytest.raises(ValueError, match='other'):  # Other errors are not disk full.
    with cli.faults_reported(workdir):
      raise ValueError('RESOURCE_EXHAUSTED: other')
  os.remove(os.path.join(workdir, 'metrics.csv'))  # Deleted: rebuilt from the checkpoint.
  loop.train_and_evaluate(CFG, workdir)
  assert _rows(os.path.join(workdir, 'metrics.csv')) == reference


def test_disk_full_in_a_checkpoint_write_is_the_one_line_under_the_commands_streams(
    tmp_path, monkeypatch):
  """What a library prints while a checkpoint write fails (Orbax's threads log tracebacks)
  is dropped; the fault's line is the last; a save that succeeds lets its output through."""
  err = io.StringIO()
  monkeypatch.setattr(sys, 'stderr', std_streams.Tolerant(err, 'stderr'))
  saves = checkpoint.Checkpoints(str(tmp_path / 'c'), keep=1)
  state = fedar_round.ServerState({'w': jax.numpy.zeros(2)}, jax.numpy.int32(1), None, None)

  def save(step, args, fail):
    print('Traceback (most recent call last): a library thread', file=sys.stderr)
    if fail:
      raise ValueError('RESOURCE_EXHAUSTED: write failed: No space left on device')
  monkeypatch.setattr(saves._manager, 'save', lambda step, args: save(step, args, False))
  saves.save(state, {})
  assert err.getvalue() == 'Traceback (most recent call last): a library thread\n'
  err.truncate(0), err.seek(0)
  monkeypatch.setattr(saves._manager, 'save', lambda step, args: save(step, args, True))
  with pytest.raises(SystemExit) as e:
    with cli.faults_reported(str(tmp_path)):
      saves.save(state, {})
  print('Exception in thread Thread-2: at exit', file=sys.stderr)
  assert e.value.code == 1 and err.getvalue() == (
      f'error: {tmp_path}: disk full (ValueError) after round 0; free space and rerun the same '
      'command to resume\n')


def test_a_signal_raised_where_it_cannot_propagate_stays_pending(capsys):
  """JAX's gc callback swallowed an early Ctrl-C: the signal must still stop the loop."""

  class Swallows:
    def __del__(self):  # Exceptions raised in __del__ cannot propagate (like a gc callback).
      os.kill(os.getpid(), signal.SIGINT)
      for _ in range(1000):  # Python runs the handler here.
        pass

  with interrupts.handled():
    Swallows()
    assert interrupts.pending()
    with pytest.raises(interrupts.Interrupted) as e:
      interrupts.stop(3)
  assert e.value.exit_code == 130 and e.value.message(0).startswith('interrupted after round 3;')
  assert 'Traceback' not in capsys.readouterr().err
  assert not interrupts.pending()


def test_lock_names_the_holder_and_takes_over_a_stale_one(tmp_path):
  workdir = str(tmp_path / 'w')
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'lock'), 'w') as f:
    f.write('999999999\n')  # Left by a dead process: its flock went with it.
  with workdir_lib.lock(workdir):
    with open(os.path.join(workdir, 'lock')) as f:
      assert f.read() == f'{os.getpid()}\n'
    with pytest.raises(ConfigError, match=rf'^--workdir: .* in use by process {os.getpid()} '):
      with workdir_lib.lock(workdir):
        pass
  with workdir_lib.lock(workdir):  # Released at the end of the body.
    pass


def test_sweep_signal_unreadable_checkpoint_and_lost_csv(tmp_path, monkeypatch, capsys):
  base = CFG.replace(rounds=4, checkpoint_every=3)
  axes = sweep_runner.SweepAxes.of(base, thresholds=(1.0, 3.0), imbalance_ratios=(2.0,))
  sweep_runner.run_sweep(base, axes, str(tmp_path / 'ref'))
  want = _rows(tmp_path / 'ref' / 'sweep.csv')
  workdir = tmp_path / 'w'
  _signal_at_round(monkeypatch, signal.SIGTERM, 2)  # Round 2 of the first group.
  with pytest.raises(SystemExit) as e:
    with cli.faults_reported(str(workdir)), interrupts.deferred():
      sweep_runner.run_sweep(base, axes, str(workdir))
  assert e.value.code == 143
  assert capsys.readouterr().err.splitlines()[-1].startswith('interrupted after round 2;')
  monkeypatch.undo()
  assert _rows(workdir / 'sweep.csv') == want[:4]
  _corrupt(workdir / 'checkpoints' / 'smote' / '2')
  (workdir / 'sweep.csv').unlink()
  sweep_runner.run_sweep(base, axes, str(workdir))
  assert _rows(workdir / 'sweep.csv') == want


def _wait_rows(path, n, proc, deadline):
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(path):
      with open(path) as f:
        if sum(1 for _ in f) - 1 >= n:
          return True
    time.sleep(0.005)
  return False


def test_cli_second_process_then_sigterm_at_a_random_round(tmp_path, compiled_once, reference):
  rounds = 10 ** 6  # Still running when the second process starts and when the signal lands.
  workdir = tmp_path / 'w'
  cmd = [sys.executable, '-m', 'fedar_jax.main', f'--workdir={workdir}', *RUN,
         f'--rounds={rounds}', '--checkpoint_every=1000']
  with open(tmp_path / 'err', 'w') as err:
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                             env=compiled_once)
    try:
      assert _wait_rows(workdir / 'metrics.csv', 1, first, time.time() + 240)
      second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env=compiled_once)
      assert second.returncode == 2, second.stderr
      lines = second.stderr.strip().splitlines()
      assert len(lines) == 1 and f'in use by process {first.pid} (pid)' in lines[0], lines
      assert _wait_rows(workdir / 'metrics.csv', random.randint(2, 20), first,
                        time.time() + 240)
      first.send_signal(signal.SIGTERM)
      assert first.wait(timeout=120) == 143
    finally:
      if first.poll() is None:
        first.kill()
  stderr = (tmp_path / 'err').read_text()
  assert 'Traceback' not in stderr
  last = stderr.strip().splitlines()[-1]
  assert last.startswith('interrupted after round ') and last.endswith(
      '; rerun the same command to resume'), last
  done = int(last.split()[3].rstrip(';'))
  assert checkpoint.latest_step(str(workdir / 'checkpoints')) == done  # Not on the cadence.
  assert [int(r['round']) for r in _rows(workdir / 'metrics.csv')] == list(range(1, done + 1))


def test_cli_early_signal_is_one_line_not_swallowed(tmp_path):
  """SIGINT during start-up (imports, then compile): exit 130 and one line, never a traceback."""
  cmd = [sys.executable, '-m', 'fedar_jax.main', f'--workdir={tmp_path / "w"}', *RUN,
         '--rounds=100000', '--checkpoint_every=1000']
  for delay in (0.3, random.uniform(1.0, 4.0)):
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
      time.sleep(delay)
      proc.send_signal(signal.SIGINT)
      _, stderr = proc.communicate(timeout=120)
    finally:
      if proc.poll() is None:
        proc.kill()
    assert proc.returncode == 130, (delay, stderr)
    assert 'Traceback' not in stderr
    assert stderr.strip().splitlines()[-1].startswith('interrupted '), (delay, stderr)
  # Once the data has loaded (compiling or in the first rounds): the run's own handler.
  with open(tmp_path / 'err', 'w') as err:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
  try:
    deadline = time.time() + 240
    while 'data: ' not in (tmp_path / 'err').read_text() and time.time() < deadline:
      time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
  finally:
    if proc.poll() is None:
      proc.kill()
  stderr = (tmp_path / 'err').read_text()
  assert 'Traceback' not in stderr
  assert stderr.strip().splitlines()[-1].startswith('interrupted after round '), stderr


def test_after_an_interrupt_line_unraisable_exceptions_are_not_printed(capsys):
  """An object the signal tore mid-construction (e.g. asyncio's loop without its `_ssock`)
  is collected at exit: after the one line nothing more is printed; otherwise the hook
  is restored."""
  from fedar_jax import interrupts
  hook = sys.unraisablehook
  with interrupts.handled():
    pass
  assert sys.unraisablehook is hook
  try:
    with interrupts.handled():
      interrupts.exit_quietly()
    assert sys.unraisablehook is not hook
    torn = AttributeError('_ssock')
    sys.unraisablehook(types.SimpleNamespace(exc_type=AttributeError, exc_value=torn,
                                             exc_traceback=None, err_msg=None, object=None))
    assert capsys.readouterr().err == ''
  finally:
    sys.unraisablehook = hook
  with interrupts.handled():
    pass
  assert sys.unraisablehook is hook
