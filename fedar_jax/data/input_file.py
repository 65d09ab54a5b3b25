"""The one check every file source makes of its --data_path before opening it."""
import os

from fedar_jax.data.errors import DataError


def require_file(path: str, flag: str = '--data_path') -> None:
  """Raises DataError naming `path` unless it is an existing regular file (or a link to one):
  'no such file', 'is a directory' or 'not a regular file' (a FIFO or device would hang)."""
  if os.path.isfile(path):
    return
  if os.path.isdir(path):
    raise DataError(path, f'is a directory; {flag} names a file')
  if os.path.exists(path):
    raise DataError(path, f'not a regular file ({flag})')
  raise DataError(path, f'no such file ({flag})')
