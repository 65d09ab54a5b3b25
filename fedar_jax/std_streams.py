"""The commands' standard streams: never the reason a run stops, nor blamed on the workdir.

`guard()`, at a command's first line (with the start-up signal handler): a closed
standard descriptor (`2>&-`) is opened on /dev/null, so no file the run opens takes its
number, and sys.stdout and sys.stderr become `Tolerant` streams: a write that fails (a
full device, a reader that went away: `| head -1`) is dropped, the descriptor is pointed
at /dev/null and the first error kept, and the run goes on to finish its workdir.
`exit_if_stdout_lost(done)` ends a command whose output did not reach stdout with one
line on stderr (exit status 1); lost stderr lines change nothing.

`held()` keeps what libraries print to stderr during a step (Orbax's threads log and
print tracebacks while a checkpoint write fails) and lets it through only if the step
succeeds; `silence()` drops everything after a command's last line. Both act only
under `guard()` (not in a test's process).
"""
import contextlib
import os
import sys


class Tolerant:
  """A text stream whose failed writes are dropped (see the module doc); other attributes
  are the wrapped stream's."""

  def __init__(self, stream, name: str):
    self._stream = stream
    self.stream_name = name
    self.lost = None     # The first OSError/ValueError a write or flush raised.
    self.quiet = False   # Everything dropped from now on.
    self.held = None     # A list collecting writes while held.

  def write(self, text: str) -> int:
    if self.quiet:
      return len(text)
    if self.held is not None:
      self.held.append(text)
      return len(text)
    try:
      return self._stream.write(text)
    except (OSError, ValueError) as e:
      self._lose(e)
      return len(text)

  def flush(self) -> None:
    if self.quiet or self.held is not None:
      return
    try:
      self._stream.flush()
    except (OSError, ValueError) as e:
      self._lose(e)

  def _lose(self, error: Exception) -> None:
    self.lost = self.lost or error
    self.quiet = True
    _to_devnull(self._stream)  # What is still buffered goes nowhere at exit.

  def __getattr__(self, name):
    return getattr(self._stream, name)


def _to_devnull(stream) -> None:
  try:
    fd = stream.fileno()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
  except (OSError, ValueError, AttributeError):
    pass


def _open_closed_descriptors() -> None:
  for fd in (0, 1, 2):
    try:
      os.fstat(fd)
    except OSError:
      got = os.open(os.devnull, os.O_RDWR)  # The lowest free number: fd itself.
      if got != fd:
        os.dup2(got, fd)
        os.close(got)


def guard() -> None:
  """Makes the standard streams tolerant (module doc); idempotent."""
  if isinstance(sys.stderr, Tolerant):
    return
  _open_closed_descriptors()
  if sys.stdout is None:  # Python sets None for a descriptor closed at start.
    sys.stdout = open(1, 'w', buffering=1, closefd=False)
  if sys.stderr is None:
    sys.stderr = open(2, 'w', buffering=1, closefd=False, errors='backslashreplace')
  sys.stdout, sys.stderr = Tolerant(sys.stdout, 'stdout'), Tolerant(sys.stderr, 'stderr')


def exit_if_stdout_lost(done: str) -> None:
  """If stdout could not be written: one line on stderr naming it, `done` saying what
  was finished, and exit status 1."""
  lost = getattr(sys.stdout, 'lost', None)
  if lost is None:
    return
  reason = getattr(lost, 'strerror', None) or type(lost).__name__
  print(f'error: stdout: cannot write ({reason}); {done}', file=sys.stderr, flush=True)
  sys.exit(1)


@contextlib.contextmanager
def held():
  """stderr's writes in the body are kept; written if the body succeeds, dropped if it
  raises (the exception says what went wrong)."""
  stream = sys.stderr
  if not isinstance(stream, Tolerant) or stream.held is not None:
    yield
    return
  stream.held = []
  try:
    yield
  except BaseException:
    stream.held = None
    raise
  text, stream.held = ''.join(stream.held), None
  stream.write(text)
  stream.flush()


def silence() -> None:
  """After a command's last line: stderr (Python's and the descriptor) goes nowhere."""
  stream = sys.stderr
  if isinstance(stream, Tolerant):
    stream.flush()
    stream.quiet = True
    _to_devnull(stream)
