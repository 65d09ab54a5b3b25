"""SIGINT and SIGTERM end a run at a round boundary, with that round's checkpoint written.

`handled()` installs the handlers for a command's lifetime. Outside
`deferred()` a signal raises `Interrupted` at once (nothing is lost: the last
checkpoint stands). Inside `deferred()` (the round loop) the first signal is
held until the loop reaches `pending()` at the end of the round, saves, and
calls `stop(round)`; a second signal raises at once. A signal that raised
outside the loop stays pending, so if something swallowed that exception the
loop still stops after its next round. `Interrupted` derives
from BaseException, so no `except Exception` on the way swallows it.
"""
import contextlib
import os
import signal
import sys
import warnings

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


_state = {'installed': False, 'deferring': False, 'pending': None, 'quiet_exit': False}


def _handler(signum, frame):
  del frame
  first = _state['pending'] is None
  if first:
    # Recorded even when raising: code that swallows the exception (a callback
    # from C++, a __del__) cannot lose the signal; the next round end stops.
    _state['pending'] = signum
  if _state['deferring'] and first:
    return
  raise Interrupted(signum)


@contextlib.contextmanager
def handled():
  """Installs the SIGINT/SIGTERM handlers for the body (call from the main thread).

  An Interrupted raised where Python cannot propagate it (e.g. inside JAX's gc
  callback) is not printed; the signal stays pending for the round loop.
  """
  old = {s: signal.signal(s, _handler) for s in SIGNALS}
  old_hook = sys.unraisablehook

  def unraisable(info):
    if not isinstance(info.exc_value, Interrupted):
      old_hook(info)
  sys.unraisablehook = unraisable
  _state.update(installed=True, deferring=False, pending=None, quiet_exit=False)
  try:
    yield
  finally:
    for s, h in old.items():
      signal.signal(s, h)
    # After an interrupt's one line, objects the signal tore mid-construction (e.g. an
    # event loop inside a library) say nothing when the exiting process collects them.
    sys.unraisablehook = (lambda info: None) if _state['quiet_exit'] else old_hook
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


def exit_quietly() -> None:
  """The process is ending with its one line: later unraisable exceptions are not printed,
  nor the warnings of coroutines a library left unawaited (Orbax's, collected at exit)."""
  _state['quiet_exit'] = True
  warnings.filterwarnings('ignore', message=r"coroutine '.*' was never awaited",
                          category=RuntimeWarning)


def pending() -> bool:
  """Whether a signal arrived and waits for the loop to stop."""
  return _state['pending'] is not None


def stop(rounds_done: int) -> None:
  """Raises the waiting signal's Interrupted, after `rounds_done` rounds (all saved)."""
  raise Interrupted(_state['pending'], rounds_done)
