"""What a checkpoint records besides the server state, and its check before a resume.

Each checkpoint (checkpoint.py, step directory `<dir>/<step>`) keeps a JSON
item `rows` (file `<dir>/<step>/rows/metadata`):

  {'rows': [[str, ...], ...],   the CSV rows of rounds 1..step
   'settings': {...},           the settings of the run or sweep that wrote it
                                (workdir.run_settings / sweep_settings: every
                                flag and the data fingerprint)
   'sha256': '...'}             of the two above (`digest`)

Host-side only (no JAX), so the command line refuses checkpoints of another run,
or edited ones, before anything is loaded or written. Checkpoints written
before settings were recorded hold only 'rows'; they resume with a warning.
"""
import hashlib
import json
import os

from absl import logging

from fedar_jax import workdir as workdir_lib
from fedar_jax.config import ConfigError


def digest(rows: list, settings: dict) -> str:
  """SHA-256 of `rows` and `settings` as canonical JSON (sorted keys, no spaces)."""
  text = json.dumps({'rows': rows, 'settings': settings}, sort_keys=True,
                    separators=(',', ':'))
  return hashlib.sha256(text.encode()).hexdigest()


def make(rows: list, settings: dict | None) -> dict:
  """The JSON item of a checkpoint: `rows` (cells as str), `settings` and their digest.
  settings None: rows alone."""
  rows = [[str(cell) for cell in row] for row in rows]
  if settings is None:
    return {'rows': rows}
  settings = json.loads(json.dumps(settings))  # As read back: tuples -> lists.
  return {'rows': rows, 'settings': settings, 'sha256': digest(rows, settings)}


def step_dirs(directory: str) -> list[str]:
  """The checkpoint step directories in `directory` (`<dir>/<step>`), newest first."""
  try:
    names = [n for n in os.listdir(directory) if n.isdigit()]
  except OSError:
    return []
  return [os.path.join(directory, n) for n in sorted(names, key=int, reverse=True)]


def _read(step_dir: str) -> dict | None:
  """The JSON item of one checkpoint; None if it does not read (set aside on resume)."""
  try:
    with open(os.path.join(step_dir, 'rows', 'metadata')) as f:
      item = json.load(f)
  except (OSError, UnicodeDecodeError, ValueError):
    return None
  return item if isinstance(item, dict) and isinstance(item.get('rows'), list) else None


def check(directory: str, settings: dict) -> None:
  """Raises ConfigError unless every readable checkpoint in `directory` was written by a
  run with `settings` (RESUMABLE ones aside) and is as written (its digest matches).

  The error names the checkpoint and the first difference. Unreadable checkpoints
  pass here (the resume sets them aside); checkpoints without recorded settings
  pass with one warning.
  """
  legacy = []
  for step_dir in step_dirs(directory):
    item = _read(step_dir)
    if item is None:
      continue
    if set(item) == {'rows'}:
      legacy.append(step_dir)
      continue
    stored, rows = item.get('settings'), item['rows']
    if not isinstance(stored, dict) or item.get('sha256') != digest(rows, stored):
      raise ConfigError('workdir', f'checkpoint {step_dir} was altered after it was written '
                        '(its rows or settings do not match its SHA-256); remove it or use a '
                        'new --workdir')
    error = workdir_lib.difference(
        stored, settings, f'checkpoint {step_dir} was made by a run',
        f'checkpoint {step_dir} was made', f'remove {directory} or use a new --workdir')
    if error is not None:
      raise error
  if legacy:
    logging.warning('%d checkpoint(s) in %s record no settings (written by an older version): '
                    'resuming without verifying them', len(legacy), directory)


def check_all(checkpoints: str, settings: dict, groups: bool = False) -> None:
  """`check` on `checkpoints` (a run's `W/checkpoints`), or with groups=True on each of its
  subdirectories (a sweep's `W/checkpoints/<group>`)."""
  if not groups:
    check(checkpoints, settings)
    return
  try:
    names = sorted(os.listdir(checkpoints))
  except OSError:
    return
  for name in names:
    if os.path.isdir(os.path.join(checkpoints, name)):
      check(os.path.join(checkpoints, name), settings)
