"""Flagfiles checked before absl reads them.

absl expands every `--flagfile=FILE` (nested ones included) by reading the
whole file as text, so a device (`/dev/zero`), a FIFO, a huge or a binary file
would hang, exhaust memory or end in a traceback. `parse` refuses those first,
one line naming the file, and strips a UTF-8 byte-order mark (what Windows
editors write) so the first line stays a flag.
"""
import contextlib
import io
import os
import stat
import tempfile

from absl import flags

MAX_BYTES = 1 << 20  # All flagfiles of one command line together, nested ones counted each time.
BOM = '\ufeff'
DIRECTIVES = ('--flagfile=', '-flagfile=')
KINDS = ((stat.S_ISDIR, 'a directory'), (stat.S_ISCHR, 'a character device'),
         (stat.S_ISBLK, 'a block device'), (stat.S_ISFIFO, 'a FIFO'),
         (stat.S_ISSOCK, 'a socket'))


class FlagfileError(flags.Error):
  """A flagfile that cannot be read as flags; str() is one line naming it."""

  def __init__(self, path: str, message: str):
    super().__init__(f'--flagfile={path}: {message}')


def parse(flag_values: flags.FlagValues, argv: list[str]) -> list[str]:
  """`flag_values(argv)` once every flagfile argv names (nested too) is known to be text.

  Returns absl's unparsed arguments (argv[0] first). Raises FlagfileError
  (a flags.Error) naming a flagfile that is not a regular file, is not UTF-8
  text (or holds a NUL byte), names itself, or makes the flagfiles read add up to
  more than MAX_BYTES. A flagfile (or one it names) starting with a byte-order
  mark is handed to absl as a temporary copy without it, removed after parsing.
  """
  with contextlib.ExitStack() as stack:
    return flag_values([argv[0], *_checked_args(argv[1:], _Reader(stack))])


class _Reader:
  """Reads flagfiles within one budget of MAX_BYTES; writes BOM-less copies to a
  temporary directory made on first use and removed when `stack` closes."""

  def __init__(self, stack: contextlib.ExitStack):
    self._stack, self._dir, self._left = stack, None, MAX_BYTES

  def text(self, path: str) -> str:
    """The UTF-8 text of the regular file at `path`."""
    try:
      info = os.stat(path)
      if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in KINDS if test(info.st_mode)), 'not a file')
        raise FlagfileError(path, f'not a regular file ({kind})')
      if info.st_size > MAX_BYTES:
        raise FlagfileError(path, f'{info.st_size} bytes; a flagfile holds at most {MAX_BYTES}')
      with open(path, 'rb') as f:
        data = f.read(MAX_BYTES + 1)
    except OSError as e:
      raise FlagfileError(path, f'cannot read ({e.strerror or e})')
    self._left -= len(data)
    if self._left < 0:
      raise _OverBudget()
    try:
      text = data.decode('utf-8')
    except UnicodeDecodeError as e:
      raise FlagfileError(path, f'not UTF-8 text (byte 0x{data[e.start]:02x} at offset '
                          f'{e.start})')
    if '\0' in text:
      raise FlagfileError(path, f'not text (NUL byte at offset {data.index(0)})')
    return text

  def copy(self, text: str) -> str:
    """The path of a new temporary flagfile holding `text`."""
    if self._dir is None:
      self._dir = self._stack.enter_context(tempfile.TemporaryDirectory(prefix='flagfile_'))
    fd, path = tempfile.mkstemp(suffix='.flags', dir=self._dir, text=True)
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      f.write(text)
    return path


class _OverBudget(Exception):
  pass


def _checked_args(args: list[str], reader: _Reader) -> list[str]:
  """args with each flagfile checked (and replaced by a copy where it had a BOM),
  up to `--` as absl reads them."""
  out, i = [], 0
  while i < len(args) and args[i] != '--':
    arg, path = args[i], None
    if arg in ('--flagfile', '-flagfile') and i + 1 < len(args):
      i, path = i + 1, os.path.expanduser(args[i + 1])
    elif arg.startswith(DIRECTIVES):
      path = _filename(arg)
    if path is None:
      out.append(arg)
    else:
      try:
        out.append(f'--flagfile={_checked(path, (), reader)}')
      except _OverBudget:
        raise FlagfileError(path, f'the flagfiles read add up to more than {MAX_BYTES} bytes '
                            '(nested ones counted each time they are named)')
    i += 1
  return out + args[i:]


def _filename(directive: str) -> str:
  """The path of a `--flagfile=PATH` line or argument, as absl takes it."""
  return os.path.expanduser(directive.split('=', 1)[1].strip())


def _checked(path: str, stack: tuple[str, ...], reader: _Reader) -> str:
  """Checks the flagfile at `path` and those it names; returns the path to give absl."""
  if not path:  # absl ignores an empty --flagfile=.
    return path
  if os.path.realpath(path) in stack:
    raise FlagfileError(path, 'names itself through --flagfile (a loop)')
  text = reader.text(path)
  changed = text.startswith(BOM)
  lines = io.StringIO(text[1:] if changed else text, newline=None).readlines()  # As absl splits.
  for n, line in enumerate(lines):
    if line.startswith(DIRECTIVES):
      inner = _filename(line)
      given = _checked(inner, (*stack, os.path.realpath(path)), reader)
      if given != inner:
        lines[n], changed = f'--flagfile={given}\n', True
  return reader.copy(''.join(lines)) if changed else path
