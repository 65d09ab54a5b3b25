"""Encoded-feature tables: the FedAR authors' latent CSV layout, or `.npz` with x, y.

CSV layout: an (optionally unnamed) index column, feature columns named
`0..D-1`, an `Emotion` name column and a `class` integer label column; either
label column may be used. An optional client column (e.g. a subject id) gives
the natural partition.
"""
import csv
import os
import zipfile
import zlib

import numpy as np

from fedar_jax.data.errors import DataError
from fedar_jax.data.labels import encode_labels
from fedar_jax.data.pool import Pool


def _finite(x: np.ndarray, path: str) -> np.ndarray:
  bad = ~np.isfinite(x)
  if bad.any():
    row = int(np.argwhere(bad)[0][0])
    raise DataError(path, f'non-finite feature value (NaN or inf) in data row {row + 1}')
  return x


def _groups(cells, path: str, column: str) -> np.ndarray:
  """Client ids int64[T] from raw cells (integers kept; strings numbered by sort order)."""
  cells = [c.strip() for c in cells]
  if any(c == '' for c in cells):
    raise DataError(path, f'empty value in client column {column!r}')
  uniq = {v: i for i, v in enumerate(sorted(set(cells)))}
  return np.array([uniq[c] for c in cells], np.int64)


def load_csv(path: str, label_column: str = 'class', client_column: str = ''):
  """Reads a latent-feature CSV.

  Returns:
    (Pool with x float32[T, D], label_ids tuple[int]).
  """
  try:
    with open(path, newline='') as f:
      rows = list(csv.reader(f))
  except OSError as e:
    raise DataError(path, f'cannot read file ({e.strerror or e})')
  except (UnicodeDecodeError, csv.Error) as e:
    raise DataError(path, f'not a readable CSV file ({e})')
  if len(rows) < 2:
    raise DataError(path, 'no data rows')
  header = [h.strip() for h in rows[0]]
  features = sorted((int(h), i) for i, h in enumerate(header) if h.isdigit())
  if not features or [d for d, _ in features] != list(range(len(features))):
    raise DataError(path, f'expected feature columns named 0..D-1; found columns: '
                    f'{", ".join(header[:8])}{", ..." if len(header) > 8 else ""}')
  for flag, column in (('label_column', label_column), ('client_column', client_column)):
    if column and column not in header:
      raise DataError(path, f'no column {column!r} (--{flag}); found columns: '
                      f'{", ".join(h for h in header if not h.isdigit())}')
  data = rows[1:]
  short = [i for i, r in enumerate(data) if len(r) != len(header)]
  if short:
    raise DataError(path, f'data row {short[0] + 1} has {len(data[short[0]])} cells, '
                    f'the header has {len(header)}')
  cols = [i for _, i in features]
  x = np.empty((len(data), len(cols)), np.float32)
  for r, row in enumerate(data):
    try:
      x[r] = [float(row[i]) for i in cols]
    except ValueError:
      bad = next(row[i] for i in cols if not _is_float(row[i]))
      raise DataError(path, f'non-numeric feature value {bad!r} in data row {r + 1}')
  _finite(x, path)
  label_idx = header.index(label_column)
  names = None
  if label_column == 'class' and 'Emotion' in header:
    e = header.index('Emotion')
    pairs = {(row[label_idx].strip(), row[e].strip()) for row in data}
    if len({v for v, _ in pairs}) == len(pairs):
      names = dict(pairs)
  y, class_names, label_ids = encode_labels([row[label_idx] for row in data], path, names)
  groups = (_groups([row[header.index(client_column)] for row in data], path, client_column)
            if client_column else None)
  return Pool(x, y, class_names, groups), label_ids


def _is_float(cell: str) -> bool:
  try:
    float(cell)
    return True
  except ValueError:
    return False


def load_npz(path: str, client_column: str = ''):
  """Reads `.npz` with x float[T, ...], y int[T] (optional class_names[K], and groups or `client_column`).

  Returns:
    (Pool, label_ids tuple[int]).
  """
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    raise DataError(path, f'cannot read .npz file ({type(e).__name__}: {e})'.splitlines()[0])
  missing = [k for k in ('x', 'y') if k not in arrays]
  if missing:
    raise DataError(path, f'missing array(s) {", ".join(missing)}; found: {", ".join(arrays)}')
  x, y = arrays['x'], arrays['y']
  if not np.issubdtype(x.dtype, np.number) or x.ndim < 2:
    raise DataError(path, f'x must be numeric with shape [T, ...], got {x.dtype} {x.shape}')
  if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
    raise DataError(path, f'y must be int[{len(x)}], got {y.dtype} {y.shape}')
  x = _finite(x.astype(np.float32), path)
  names = None
  if 'class_names' in arrays:
    names = {str(i): str(n) for i, n in enumerate(arrays['class_names'])}
  y, class_names, label_ids = encode_labels([str(v) for v in y], path, names)
  group_key = client_column or ('groups' if 'groups' in arrays else '')
  groups = None
  if group_key:
    if group_key not in arrays:
      raise DataError(path, f'no array {group_key!r} (--client_column); found: '
                      f'{", ".join(arrays)}')
    if arrays[group_key].shape != (len(x),):
      raise DataError(path, f'array {group_key!r} has shape {arrays[group_key].shape}, '
                      f'expected ({len(x)},): one client id per row of x')
    groups = _groups([str(v) for v in arrays[group_key]], path, group_key)
  return Pool(x, y, class_names, groups), label_ids


def load(path: str, label_column: str = 'class', client_column: str = ''):
  """A latent CSV, or `.npz` by extension. Returns (Pool, label_ids)."""
  if not path:
    raise DataError('--data_path', 'is required for --dataset=latent_csv')
  if not os.path.isfile(path):
    raise DataError(path, 'no such file (--data_path)')
  if path.endswith('.npz'):
    return load_npz(path, client_column)
  return load_csv(path, label_column, client_column)
