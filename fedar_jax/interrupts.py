"""SIGINT and SIGTERM end a run at a round boundary, with that round's checkpoint written.

`handled()` installs the handlers for a command's lifetime. Outside
`deferred()` a signal raises `Interrupted` at once (nothing is lost: the last
checkpoint stands). Inside `deferred()` (the round loop) the first signal is
held until the loop reaches `pending()` at the end of the round, saves, and
calls `stop(round)`; a second signal raises at once. `Interrupted` derives
from BaseException, so no `except Exception` on the way swallows it.
"""
import contextlib
import os
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
  """A run ended by a signal; `exit_code` is 128 + the signal number (130 / 143)."""

  def __init__(self, signum: int, rounds_done: int | None = None):
    super().__init__(f'signal {signum}')
    self.signum, self.rounds_done = signum, rounds_done

  @property
  def exit_code(self) -> int:
    return 128 + self.signum

  def message(self, rounds_done: int) -> str:
    """The one line to print: "interrupted after round N; rerun the same command to resume"."""
    n = rounds_done if self.rounds_done is None else self.rounds_done
    return f'interrupted after round {n}; rerun the same command to resume'


def exit_while_starting() -> None:
  """Until `handled()`, a signal ends the process with one line (call before the slow imports)."""

  def handler(signum, frame):
    del frame
    print('interrupted while starting; rerun the same command to resume', file=sys.stderr,
          flush=True)
    os._exit(128 + signum)  # Nothing is written yet; nothing in the imports can swallow this.
  for s in SIGNALS:
    signal.signal(s, handler)


_state = {'installed': False, 'deferring': False, 'pending': None}


def _handler(signum, frame):
  del frame
  if _state['deferring'] and _state['pending'] is None:
    _state['pending'] = signum
    return
  raise Interrupted(signum)


@contextlib.contextmanager
def handled():
  """Installs the SIGINT/SIGTERM handlers for the body (call from the main thread)."""
  old = {s: signal.signal(s, _handler) for s in SIGNALS}
  _state.update(installed=True, deferring=False, pending=None)
  try:
    yield
  finally:
    for s, h in old.items():
      signal.signal(s, h)
    _state.update(installed=False, deferring=False, pending=None)


@contextlib.contextmanager
def deferred(enabled: bool = True):
  """In the body a first signal waits for the next `pending()` check (no-op if not handled)."""
  before = _state['deferring']
  _state['deferring'] = _state['installed'] and enabled
  try:
    yield
  finally:
    _state['deferring'] = before


def pending() -> bool:
  """Whether a signal arrived and waits for the loop to stop."""
  return _state['pending'] is not None


def stop(rounds_done: int) -> None:
  """Raises the waiting signal's Interrupted, after `rounds_done` rounds (all saved)."""
  raise Interrupted(_state['pending'], rounds_done)
