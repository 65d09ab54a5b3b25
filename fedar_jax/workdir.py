"""What a workdir keeps between invocations: the settings it was started with, and CSV rows.

Host-side file handling only (no JAX), so the CLI can refuse a mismatched
workdir before compiling anything.

  settings file (config.json / sweep.json): every setting of the run that
      started the workdir and the fingerprint of its data (`data_fingerprint`);
      a rerun must match it, except RESUMABLE ones (checkpoint_record.py checks
      the checkpoints the same way).
  CSV files: rows are appended and flushed as rounds end; on resume the file is
      rewritten from the rows kept in the checkpoint (rows past the checkpointed
      round are recomputed identically), so rows are never lost or duplicated,
      and a missing, truncated or corrupt file is rebuilt.
  lock: the pid of the process running in the workdir (an flock held for the
      run; the kernel releases it when the process dies, so a stale lock is
      simply taken over).
"""
import contextlib
import csv
import errno
import fcntl
import json
import os
from typing import Callable

from absl import logging

from fedar_jax import data_fingerprint
from fedar_jax.config import ConfigError

# Settings that may change when resuming: more rounds continue the run; the
# checkpoint cadence and the process and device layout (multi-host and multi-device results
# equal single-device ones to float32 reordering) do not change the study.
RESUMABLE = ('rounds', 'checkpoint_every', 'keep_checkpoints', 'coordinator_address',
             'num_processes', 'process_id', 'coordinator_timeout_s', 'cpu_devices')


def _normalise(settings: dict) -> dict:
  return json.loads(json.dumps(settings))  # tuples -> lists, as stored


# The key of the data source's fingerprint (data_fingerprint.py) in a settings dict.
FINGERPRINT = 'data_fingerprint'


def run_settings(cfg) -> dict:
  """What a run records and a resume must match: every setting of `cfg` (a RunConfig) and
  the fingerprint of its data source."""
  return {**cfg.to_dict(), FINGERPRINT: data_fingerprint.of_config(cfg)}


def sweep_settings(base, lists: dict) -> dict:
  """`run_settings` of a sweep's base config with its sweep lists ({flag: values})."""
  return {**base.to_dict(), **{k: list(v) for k, v in lists.items()},
          FINGERPRINT: data_fingerprint.of_config(base)}


def _data_flag(fingerprint: dict) -> str:
  return {'file': 'data_path', 'directory': 'data_dir', 'tfds': 'data_dir'}.get(
      fingerprint.get('source'), 'dataset')


def difference(stored: dict, settings: dict, where: str, since: str, remedy: str | None = None,
               missing_ok: tuple[str, ...] = ()) -> ConfigError | None:
  """The first way `settings` differs from the `stored` settings, as the ConfigError to
  raise; None if they agree. `where` says what holds them ('W holds a run', 'checkpoint C
  was made by a run'), `since` when they were recorded ('W was started'); `remedy` ends
  the message (default: what to restore or change).

  RESUMABLE settings may differ. A setting missing from `stored` is an error (a settings
  file edited by hand, or written by another version) unless listed in `missing_ok`.
  """
  settings = _normalise(settings)
  for key, value in settings.items():
    if key in RESUMABLE or (key in stored and stored[key] == value):
      continue
    if key not in stored:
      if key in missing_ok:
        continue
      return ConfigError(key, f'{where} with no recorded {key!r} (edited, or written by '
                         'another version of fedar_jax); '
                         f'{remedy or "restore it or use a new --workdir"}')
    if key == FINGERPRINT:
      what = data_fingerprint.difference(stored[key], value)
      if what is None:
        continue
      return ConfigError(_data_flag(value), f'the data changed since {since}: {what}; '
                         f'{remedy or "restore the data or use a new --workdir"}')
    return ConfigError(key, f'{where} with --{key}={_show(stored[key])}, got {_show(value)}; '
                       f'{remedy or "resume with the same value or use a new --workdir"}')
  return None


def check_resume(workdir: str, name: str, settings: dict) -> None:
  """Raises ConfigError if `workdir/name` holds settings that differ from `settings`.

  The error names the first differing flag (or the data source, for a changed
  data fingerprint, or a setting missing from the file). `rounds` may grow (the
  run goes on) but not shrink below what the workdir was started with. A file
  without a data fingerprint (a workdir started before fingerprints were kept)
  resumes with a warning that the data is not verified this once.
  """
  path = os.path.join(workdir, name)
  if not os.path.lexists(path):
    return
  stored = _read_settings(path)
  if FINGERPRINT in settings and FINGERPRINT not in stored:
    logging.warning('%s records no data fingerprint (an older workdir): the data source is '
                    'not verified on this resume; it is recorded from now on', path)
  error = difference(stored, settings, f'{workdir!r} holds a run', f'{workdir!r} was started',
                     missing_ok=(FINGERPRINT,))
  if error is not None:
    raise error
  if 'rounds' in stored and settings.get('rounds', stored['rounds']) < stored['rounds']:
    raise ConfigError('rounds', f'{workdir!r} holds a run with --rounds={stored["rounds"]}, '
                      f'got {settings["rounds"]}; --rounds may only grow on resume')


# The settings file each command writes, and what a workdir holding it is.
KINDS = {'config.json': ('a run', 'fedar-run'), 'sweep.json': ('a sweep', 'fedar-sweep')}


def check_kind(workdir: str, name: str) -> None:
  """Raises ConfigError if `workdir` holds the other command's settings file (KINDS):
  a sweep's workdir given to a run, or a run's to a sweep."""
  for other, (what, command) in KINDS.items():
    if other != name and os.path.lexists(os.path.join(workdir, other)):
      raise ConfigError('workdir', f'{workdir!r} holds {what} ({other}); resume it with '
                        f'{command}, or use a new --workdir')


def _read_settings(path: str) -> dict:
  """The settings dict stored at `path`; ConfigError if it is not one."""
  try:
    with open(path) as f:
      stored = json.load(f)
  except (OSError, UnicodeDecodeError, ValueError) as e:
    what = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
    raise ConfigError('workdir', f'{path} is not a readable settings file ({what}); restore it '
                      'or use a new --workdir')
  if not isinstance(stored, dict):
    raise ConfigError('workdir', f'{path} holds a JSON {type(stored).__name__}, not the '
                      'settings object this run wrote; restore it or use a new --workdir')
  return stored


# What the commands write in a workdir: files (the settings files are checked as they are
# read, `check_resume`), and folders.
FILES = ('metrics.csv', 'sweep.csv', 'summary.json', 'summary.csv',
         'partition.json', 'partition.csv', 'partition.png', 'report.md', 'lock')
FOLDERS = ('checkpoints', 'plots', 'tb')


def check_paths(workdir: str, subdirs=FOLDERS, files=FILES) -> None:
  """Raises ConfigError unless `workdir` can be a directory this process writes in, with
  its `subdirs` directories and its `files` regular files (those present).

  A missing workdir must have a directory as its nearest existing ancestor, one that a
  folder can be made in; an existing one must take a new file (a probe, removed at once).
  """
  if not workdir:
    raise ConfigError('workdir', 'is required')
  path = os.path.abspath(workdir)
  if os.path.lexists(path) and not os.path.isdir(path):
    raise ConfigError('workdir', f'{workdir!r} exists and is not a directory')
  parent = path
  while not os.path.lexists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ConfigError('workdir', f'{workdir!r} is below {parent!r}, which is not a directory')
  for name in subdirs:
    sub = os.path.join(path, name)
    if os.path.lexists(sub) and not os.path.isdir(sub):
      raise ConfigError('workdir', f'{sub!r} exists and is not a directory; move it away '
                        'or use a new --workdir')
  for name in files:
    entry = os.path.join(path, name)
    if os.path.lexists(entry) and not os.path.isfile(entry):
      raise ConfigError('workdir', f'{entry!r} exists and is not a regular file; move it away '
                        'or use a new --workdir')
  check_writable(path if parent == path else parent, 'workdir', workdir)


def check_writable(directory: str, flag: str, shown: str) -> None:
  """Raises ConfigError naming `--flag` and `shown` unless a folder can be made in the
  existing `directory` (made and removed at once), and `shown`'s own name is not too long."""
  probe = os.path.join(directory, f'.fedar_probe_{os.getpid()}')
  try:
    os.mkdir(probe)
    os.rmdir(probe)
    for part in os.path.abspath(shown).split(os.sep):
      if len(os.fsencode(part)) > os.pathconf(directory, 'PC_NAME_MAX'):
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
  except OSError as e:
    raise ConfigError(flag, f'{shown!r} cannot be written ({e.strerror or type(e).__name__}); '
                      f'use another --{flag}') from None


def check_unlocked(workdir: str) -> None:
  """ConfigError naming the holder's pid if another process holds `workdir/lock`
  (a probe that creates nothing, so a busy workdir is refused before data loads)."""
  path = os.path.join(workdir, 'lock')
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except OSError:
    holder = os.pread(fd, 32, 0).decode(errors='replace').strip() or 'unknown'
    raise ConfigError('workdir', f'{workdir!r} is in use by process {holder} (pid); wait for '
                      'it to end or use another --workdir') from None
  finally:
    os.close(fd)


@contextlib.contextmanager
def lock(workdir: str):
  """Holds `workdir/lock` for the body; ConfigError naming the holder's pid if another has it."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'lock')
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    holder = os.pread(fd, 32, 0).decode(errors='replace').strip() or 'unknown'
    os.close(fd)
    raise ConfigError('workdir', f'{workdir!r} is in use by process {holder} (pid); wait for '
                      'it to end or use another --workdir') from None
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    yield
  finally:
    os.close(fd)  # Releases the lock; the file stays (removing it would race a waiting peer).


def _show(value) -> str:
  return ','.join(str(v) for v in value) if isinstance(value, list) else str(value)


def save_settings(workdir: str, name: str, settings: dict) -> None:
  """Writes `settings` as JSON to `workdir/name` (atomically)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, name)
  with open(path + '.tmp', 'w') as f:
    json.dump(_normalise(settings), f, indent=2)
  os.replace(path + '.tmp', path)


def open_rows(path: str | None, header: list[str], keep: Callable[[dict], bool] | None = None,
              rows: list[list] | None = None):
  """Opens the CSV file `path` for appending rows, after rewriting what it holds.

  With `rows` (the rows kept in the checkpoint), the file is rewritten as
  `header` + `rows`, whatever it held. Otherwise existing rows with `keep(row)`
  are kept (unparsable lines are dropped); a missing or empty file starts with
  `header`, and an existing file with other columns raises ConfigError.
  Returns (file, csv.writer); flush after each round. `path=None` discards the
  rows (processes other than the writer).
  """
  if path is None:
    f = open(os.devnull, 'w', newline='')
    return f, csv.writer(f)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  kept = rows if rows is not None else _kept_rows(path, header, keep)
  with open(path + '.tmp', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(kept)
  os.replace(path + '.tmp', path)
  f = open(path, 'a', newline='')
  return f, csv.writer(f)


def _kept_rows(path: str, header: list[str], keep: Callable[[dict], bool]) -> list[list[str]]:
  if not os.path.exists(path) or os.path.getsize(path) == 0:
    return []
  with open(path, newline='', errors='replace') as f:
    lines = [line.replace('\0', '') for line in f]
  parsed = list(csv.reader(lines))
  if parsed[0] != header:
    raise ConfigError('workdir', f'{path} has other columns than this run writes; '
                      'use a new --workdir')

  def kept(row):
    try:
      return len(row) == len(header) and keep(dict(zip(header, row)))
    except ValueError:  # A garbled cell.
      return False
  return [row for row in parsed[1:] if kept(row)]
