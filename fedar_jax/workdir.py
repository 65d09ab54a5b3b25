"""What a workdir keeps between invocations: the settings it was started with, and CSV rows.

Host-side file handling only (no JAX), so the CLI can refuse a mismatched
workdir before compiling anything.

  settings file (config.json / sweep.json): every setting of the run that
      started the workdir; a rerun must match it, except RESUMABLE ones.
  CSV files: rows are appended and flushed as rounds end; on resume, rows past
      the checkpointed round are dropped (they are recomputed identically), so
      rows are never lost or duplicated.
"""
import csv
import json
import os
from typing import Callable

from fedar_jax.config import ConfigError

# Settings that may change when resuming: more rounds continue the run; the
# checkpoint cadence and the process layout (multi-host results equal
# single-process ones) do not change any number.
RESUMABLE = ('rounds', 'checkpoint_every', 'keep_checkpoints', 'coordinator_address',
             'num_processes', 'process_id')


def _normalise(settings: dict) -> dict:
  return json.loads(json.dumps(settings))  # tuples -> lists, as stored


def check_resume(workdir: str, name: str, settings: dict) -> None:
  """Raises ConfigError if `workdir/name` holds settings that differ from `settings`.

  The error names the first differing flag. `rounds` may grow (the run goes on)
  but not shrink below what the workdir was started with.
  """
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = json.load(f)
  settings = _normalise(settings)
  for key, value in settings.items():
    if key in RESUMABLE or key not in stored or stored[key] == value:
      continue
    raise ConfigError(key, f'{workdir!r} holds a run with --{key}={_show(stored[key])}, got '
                      f'{_show(value)}; resume with the same value or use a new --workdir')
  if 'rounds' in stored and settings.get('rounds', stored['rounds']) < stored['rounds']:
    raise ConfigError('rounds', f'{workdir!r} holds a run with --rounds={stored["rounds"]}, '
                      f'got {settings["rounds"]}; --rounds may only grow on resume')


def _show(value) -> str:
  return ','.join(str(v) for v in value) if isinstance(value, list) else str(value)


def save_settings(workdir: str, name: str, settings: dict) -> None:
  """Writes `settings` as JSON to `workdir/name` (atomically)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, name)
  with open(path + '.tmp', 'w') as f:
    json.dump(_normalise(settings), f, indent=2)
  os.replace(path + '.tmp', path)


def open_rows(path: str | None, header: list[str], keep: Callable[[dict], bool]):
  """Opens the CSV file `path` for appending rows, keeping only existing rows with `keep(row)`.

  A missing or empty file starts with `header`. An existing file with other
  columns raises ConfigError. Returns (file, csv.writer); flush after each round.
  `path=None` discards the rows (processes other than the writer).
  """
  if path is None:
    f = open(os.devnull, 'w', newline='')
    return f, csv.writer(f)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  kept = []
  if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path, newline='') as f:
      reader = csv.reader(f)
      old_header = next(reader)
      if old_header != header:
        raise ConfigError('workdir', f'{path} has other columns than this run writes; '
                          'use a new --workdir')
      kept = [row for row in reader if len(row) == len(header)
              and keep(dict(zip(header, row)))]
  with open(path + '.tmp', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(kept)
  os.replace(path + '.tmp', path)
  f = open(path, 'a', newline='')
  return f, csv.writer(f)
