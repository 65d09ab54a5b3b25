"""Encoded-feature tables: the FedAR authors' latent CSV layout, or `.npz` with x, y.

CSV layout: an (optionally unnamed) index column, feature columns named
`0..D-1` (ASCII digits), an `Emotion` name column and a `class` integer label
column; either label column may be used. An optional client column (e.g. a
subject id) gives the natural partition. Features are read as float32: values
NaN, infinite, complex or beyond float32's range are refused, not converted.
"""
import csv
import math
import os
import zipfile
import zlib

import numpy as np

from fedar_jax.data.csv_reading import open_csv, unique_columns
from fedar_jax.data.errors import DataError
from fedar_jax.data.input_file import require_file
from fedar_jax.data.labels import encode_labels
from fedar_jax.data.pool import Pool


FLOAT32_MAX = float(np.finfo(np.float32).max)
NPZ_KEYS = ('x', 'y', 'class_names', 'groups')


def _float32(x: np.ndarray, path: str) -> np.ndarray:
  """Real x[T, ...] (int or float) as float32, refusing NaN, inf and values float32 cannot hold."""
  if x.dtype.kind == 'f':
    bad = ~np.isfinite(x)
    if bad.any():
      row = int(np.argwhere(bad)[0][0])
      raise DataError(path, f'non-finite feature value (NaN or inf) in data row {row + 1}')
    over = np.argwhere(np.abs(x) > FLOAT32_MAX)
    if len(over):
      raise DataError(path, f'feature value {x[tuple(over[0])]:g} in data row {over[0][0] + 1} '
                      f'is outside the float32 range (+-{FLOAT32_MAX:.4g})')
  return x.astype(np.float32)


def _is_feature(name: str) -> bool:
  return name.isascii() and name.isdigit()


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
    with open_csv(path) as f:
      rows = list(csv.reader(f))
  except OSError as e:
    raise DataError(path, f'cannot read file ({e.strerror or e})')
  except (UnicodeDecodeError, csv.Error) as e:
    raise DataError(path, f'not a readable CSV file ({e})')
  if len(rows) < 2:
    raise DataError(path, 'no data rows')
  header = unique_columns(rows[0], path)
  odd = [h for h in header if h.isnumeric() and not _is_feature(h)]
  if odd:
    raise DataError(path, f'column {odd[0]!r} looks like a number but only ASCII digits name '
                    'feature columns (0..D-1)')
  features = sorted((int(h), i) for i, h in enumerate(header) if _is_feature(h))
  if not features or [d for d, _ in features] != list(range(len(features))):
    raise DataError(path, f'expected feature columns named 0..D-1; found columns: '
                    f'{", ".join(header[:8])}{", ..." if len(header) > 8 else ""}')
  for flag, column in (('label_column', label_column), ('client_column', client_column)):
    if column and column not in header:
      raise DataError(path, f'no column {column!r} (--{flag}); found columns: '
                      f'{", ".join(h for h in header if not _is_feature(h))}')
  data = rows[1:]
  short = [i for i, r in enumerate(data) if len(r) != len(header)]
  if short:
    raise DataError(path, f'data row {short[0] + 1} has {len(data[short[0]])} cells, '
                    f'the header has {len(header)}')
  cols = [i for _, i in features]
  x = np.empty((len(data), len(cols)), np.float64)
  for r, row in enumerate(data):
    try:
      x[r] = [float(row[i]) for i in cols]
    except ValueError:
      bad = next(row[i] for i in cols if not _is_float(row[i]))
      raise DataError(path, f'non-numeric feature value {bad!r} in data row {r + 1}')
  x = _float32(x, path)
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
  """Reads `.npz` with x real[T, ...] (D > 0 values per row), y int[T] (optional
  class_names[K], and groups or `client_column`).

  Returns:
    (Pool, label_ids tuple[int]).
  """
  arrays, found = _read_npz(path, {*NPZ_KEYS, client_column} - {''})
  missing = [k for k in ('x', 'y') if k not in arrays]
  if missing:
    raise DataError(path, f'missing array(s) {", ".join(missing)}; found: {", ".join(found)}')
  x, y = arrays['x'], arrays['y']
  if x.dtype.kind == 'c':
    raise DataError(path, f'x is {x.dtype}; features must be real numbers')
  if x.dtype.kind not in 'iuf' or x.ndim < 2:
    raise DataError(path, f'x must be numeric with shape [T, ...], got {x.dtype} {x.shape}')
  if 0 in x.shape[1:]:
    raise DataError(path, f'x has shape {x.shape}: no feature values per row')
  if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in 'iu':
    raise DataError(path, f'y must be int[{len(x)}], got {y.dtype} {y.shape}')
  x = _float32(x, path)
  names = None
  if 'class_names' in arrays:
    names = {str(i): str(n) for i, n in enumerate(arrays['class_names'])}
  y, class_names, label_ids = encode_labels([str(v) for v in y], path, names)
  group_key = client_column or ('groups' if 'groups' in arrays else '')
  groups = None
  if group_key:
    if group_key not in arrays:
      raise DataError(path, f'no array {group_key!r} (--client_column); found: '
                      f'{", ".join(found)}')
    if arrays[group_key].shape != (len(x),):
      raise DataError(path, f'array {group_key!r} has shape {arrays[group_key].shape}, '
                      f'expected ({len(x)},): one client id per row of x')
    groups = _groups([str(v) for v in arrays[group_key]], path, group_key)
  return Pool(x, y, class_names, groups), label_ids


def _read_npz(path: str, keys: set[str]) -> tuple[dict[str, np.ndarray], list[str]]:
  """The arrays of the .npz at `path` named in `keys`, and the names of all it holds.

  Each array's header is checked against the bytes stored (and this
  machine's memory) before the array is allocated.
  """
  try:
    with np.load(path, allow_pickle=False) as f:
      wanted = [k for k in f.files if k in keys]
      for key in wanted:
        _check_npy_header(f.zip, key, path)
      return {k: f[k] for k in wanted}, list(f.files)
  except MemoryError:
    raise DataError(path, 'too large to load into this machine\'s memory')
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    if isinstance(e, DataError):
      raise
    raise DataError(path, f'cannot read .npz file ({type(e).__name__}: {e})'.splitlines()[0])


def _check_npy_header(archive: zipfile.ZipFile, key: str, path: str) -> None:
  """DataError when array `key`'s header claims more bytes than stored or than memory holds."""
  member = f'{key}.npy' if f'{key}.npy' in archive.namelist() else key
  info = archive.getinfo(member)
  with archive.open(info) as fp:
    version = np.lib.format.read_magic(fp)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(fp)
    stored = info.file_size - fp.tell()
  if dtype.hasobject:  # np.load refuses these (allow_pickle=False) without allocating.
    return
  need = math.prod(shape) * dtype.itemsize
  claim = f'array {key!r} claims shape {shape} {dtype} ({_size(need)})'
  if need > stored:
    raise DataError(path, f'{claim} but holds {_size(max(stored, 0))}')
  memory = _physical_memory()
  if memory and need > memory:
    raise DataError(path, f'{claim}, more than this machine\'s {_size(memory)} of memory')


def _physical_memory() -> int:
  """Bytes of RAM, or 0 where the platform does not say."""
  try:
    return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (AttributeError, OSError, ValueError):
    return 0


def _size(n: int) -> str:
  for unit, scale in (('GiB', 1 << 30), ('MiB', 1 << 20)):
    if n >= scale:
      return f'{n / scale:.1f} {unit}'
  return f'{n} bytes'


def count_ids(path: str, client_column: str = '') -> int | None:
  """The number of distinct client ids in the `client_column` column (a `.npz`: that array,
  default `groups`) of the file at `path`, read without its features; None where the file
  has no such column or cannot be read (loading it then says why)."""
  try:
    if path.endswith('.npz'):
      key = client_column or 'groups'
      arrays, _ = _read_npz(path, {key})
      return len({str(v).strip() for v in arrays[key]}) if key in arrays else None
    if not client_column:
      return None
    with open_csv(path) as f:
      reader = csv.reader(f)
      column = [h.strip() for h in next(reader)].index(client_column)
      return len({row[column].strip() for row in reader if len(row) > column})
  except (DataError, OSError, ValueError, IndexError, StopIteration, csv.Error):
    return None


def load(path: str, label_column: str = 'class', client_column: str = ''):
  """A latent CSV, or `.npz` by extension. Returns (Pool, label_ids)."""
  if not path:
    raise DataError('--data_path', 'is required for --dataset=latent_csv')
  require_file(path)
  if path.endswith('.npz'):
    return load_npz(path, client_column)
  return load_csv(path, label_column, client_column)
