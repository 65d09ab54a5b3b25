"""The console scripts' entry points: a signal at any moment of start-up is one line.

Each child runs an entry point the way the installed script does (import it,
call it). The signal goes in once the child's start-up handler is in place
(SIGTERM caught in /proc/PID/status: Python itself leaves SIGTERM alone), then
after a few moments: while the command imports, checks its flags, loads JAX. (Later
moments: tests/test_faults.py.)
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.test_checkpoint import ROOT, RUN


def _catches_sigterm(pid: int) -> bool:
  with open(f'/proc/{pid}/status') as f:
    caught = next(line for line in f if line.startswith('SigCgt:'))
  return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def _signal_while_starting(entry: str, args: list, signum: int, delay: float):
  code = f'import sys; from fedar_jax import console_scripts; console_scripts.{entry}()'
  proc = subprocess.Popen([sys.executable, '-c', code, *args], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, 'PYTHONPATH': ROOT})
  try:
    deadline = time.time() + 60
    while not _catches_sigterm(proc.pid):
      assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
      time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  return proc.returncode, stderr.strip().splitlines()


@pytest.mark.parametrize('signum,delay', [(signal.SIGINT, 0.0), (signal.SIGTERM, 0.2),
                                          (signal.SIGINT, 0.4), (signal.SIGINT, 0.6)])
def test_fedar_run_signal_at_start_is_one_line(tmp_path, signum, delay):
  args = [f'--workdir={tmp_path / "w"}', *RUN, '--rounds=100000', '--checkpoint_every=1000']
  rc, lines = _signal_while_starting('run', args, signum, delay)
  assert rc == 128 + signum, (delay, lines)
  assert len(lines) == 1 and lines[0].startswith('interrupted '), (delay, lines)
  if delay == 0:  # Before the command's own handler: the start-up one answers.
    assert lines == ['interrupted while starting; rerun the same command to resume']


def test_fedar_sweep_signal_at_start_is_one_line(tmp_path):
  args = [f'--workdir={tmp_path / "w"}', *RUN, '--thresholds=1,2']
  rc, lines = _signal_while_starting('sweep', args, signal.SIGINT, 0.3)
  assert rc == 130 and len(lines) == 1 and lines[0].startswith('interrupted '), lines


def test_fedar_population_signal_at_start_is_one_line(tmp_path):
  # Valid flags (a long write), so the signal, not a refusal, ends it.
  args = [f'--out={tmp_path / "pop"}', '--num_clients=200000', '--samples_per_client=8',
          '--imbalance_ratio=2', '--feature_dim=4']
  rc, lines = _signal_while_starting('population', args, signal.SIGINT, 0.3)
  assert rc == 130 and len(lines) == 1 and lines[0].startswith('interrupted'), lines
  assert not (tmp_path / 'pop').exists()
