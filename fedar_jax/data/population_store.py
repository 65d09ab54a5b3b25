"""An on-disk population: the format and its reader (`open`), a `CohortSource`.

A population directory (written by `fedar-population`, data/population_writer.py):

  metadata.json          format, version, classes, row shape, storage dtype, capacity,
                         shards, source, partition, seeds, the data flags that made it.
                         Written last: a directory without it is not a population.
  index/shard.npy        int32[C]    the shard holding client c's rows
  index/offset.npy       int64[C]    its first row in that shard
  index/stored.npy       int32[C]    rows stored (>= rows; see below)
  index/rows.npy         int32[C]    real rows (the mask: rows [0, rows) are real)
  index/class_counts.npy int32[C, K] real rows per class
  index/attackers.npy    bool[C]     attacker clients (only when the flags made any)
  shards/x-SSSSS.npy     storage dtype [R_s, *row_shape]   client rows, client after client
  shards/y-SSSSS.npy     int32[R_s]                        their labels
  test/x.npy, test/y.npy float32[T, *row_shape], int32[T]   the balanced test set
  stats.npz              count float64[], sum, sum_sq float64[*row_shape]: the population
                         moments --standardize=federated scales with (`standardize`)

Rows are stored raw (before --standardize), so `cohort` returns exactly the rows
`load.load_federated` gives for those clients; `cohort_scaling.standardized` scales
them as the in-memory run does. A client's rows past `rows` are stored only when
they are not zero (an attacker's masked rows), so a cohort equals the in-memory
padded clients bit for bit. uint8 storage holds k/255 values (images) exactly;
float16 is lossy and only written on request.

Shards are .npy files read with positioned reads (os.preadv) from a thread pool:
no file is mapped, so a process's memory holds only the cohorts it gathers
(BUILD_NOTES, "Populations on disk").
"""
import builtins
import concurrent.futures
import json
import os
import zipfile

import numpy as np

from fedar_jax import config as config_lib
from fedar_jax.data.errors import DataError
from fedar_jax.data.federated import ClientData, TestData

FORMAT = 'fedar-population'
VERSION = 1
METADATA = 'metadata.json'
PARTIAL_SUFFIX = '.partial'
STORAGE_DTYPES = ('float32', 'float16', 'uint8')
INDEX_FIELDS = {'shard': np.int32, 'offset': np.int64, 'stored': np.int32, 'rows': np.int32,
                'class_counts': np.int32}
READ_THREADS = 8
# The RunConfig fields that decide a population's rows (besides the Data group's).
ATTACK_FIELDS = ('attacker_fraction', 'attack', 'attack_ratio', 'attack_target')


def shard_path(root: str, kind: str, shard: int) -> str:
  """shards/x-SSSSS.npy (kind 'x') or shards/y-SSSSS.npy (kind 'y') under `root`."""
  return os.path.join(root, 'shards', f'{kind}-{shard:05d}.npy')


def index_path(root: str, name: str) -> str:
  return os.path.join(root, 'index', f'{name}.npy')


def to_float32(stored: np.ndarray) -> np.ndarray:
  """Stored rows as the float32 the run trains on (uint8 k -> k / 255, as images load)."""
  if stored.dtype == np.uint8:
    return stored.astype(np.float32) / 255.0
  return stored.astype(np.float32, copy=False)


def read_metadata(path: str) -> dict:
  """The metadata of the population at `path` (a complete one), or DataError naming the
  file or directory at fault."""
  if not os.path.isdir(path):
    if os.path.isdir(path + PARTIAL_SUFFIX):
      raise DataError(path, f'is half-written ({path + PARTIAL_SUFFIX} holds the rows written '
                      'so far); rerun fedar-population with the same flags to finish it')
    raise DataError(path, 'no such population directory')
  meta_file = os.path.join(path, METADATA)
  if not os.path.isfile(meta_file):
    raise DataError(path, f'is not a complete population (no {METADATA}; fedar-population '
                    'writes it last)')
  try:
    with builtins.open(meta_file) as f:
      meta = json.load(f)
  except (OSError, ValueError) as e:
    raise DataError(meta_file, f'unreadable ({type(e).__name__}: {e})'.splitlines()[0])
  if not isinstance(meta, dict) or meta.get('format') != FORMAT:
    raise DataError(meta_file, f'is not a {FORMAT} metadata file')
  if meta.get('version') != VERSION:
    raise DataError(meta_file, f'format version {meta.get("version")!r}; this reader reads '
                    f'version {VERSION}')
  missing = [k for k in ('num_clients', 'capacity', 'row_shape', 'storage_dtype', 'class_names',
                         'shard_rows') if k not in meta]
  if missing:
    raise DataError(meta_file, f'lacks {", ".join(missing)}')
  if meta['storage_dtype'] not in STORAGE_DTYPES:
    raise DataError(meta_file, f'storage dtype {meta["storage_dtype"]!r} is not one of '
                    f'{", ".join(STORAGE_DTYPES)}')
  return meta


def population_fields() -> tuple[str, ...]:
  """The RunConfig fields a population is built from: the Data group but --standardize
  (applied when read) and --population (the run's reference to one), the attack fields,
  and the seeds."""
  data = [f.name for title, group in config_lib.groups() if title == 'Data' for f in group]
  return (tuple(f for f in data if f not in ('standardize', 'population')) + ATTACK_FIELDS
          + ('seed', 'data_seed'))


def population_flags(cfg) -> dict:
  """{field: value} of `population_fields` (JSON-ready: tuples as lists)."""
  d = cfg.to_dict()
  return {f: d[f] for f in population_fields()}


def check_config(meta: dict, cfg, path: str) -> None:
  """DataError naming the first flag whose value differs from the one that built the
  population `path` (metadata `meta`); the effective data seed is what is compared."""
  built = dict(meta.get('flags', {}))
  want = population_flags(cfg)
  seed = lambda f: f['data_seed'] if f['data_seed'] >= 0 else f['seed']
  if 'seed' in built and seed(built) != seed(want):
    raise DataError('--data_seed', f'draws the data with seed {seed(want)}; {path} was built '
                    f'with seed {seed(built)}')
  for name in population_fields():
    if name in ('seed', 'data_seed') or name not in built:
      continue
    have = tuple(built[name]) if isinstance(built[name], list) else built[name]
    value = tuple(want[name]) if isinstance(want[name], list) else want[name]
    if have != value:
      raise DataError(f'--{name}', f'is {value!r}; {path} was built with {have!r}')


def cohort_shape(path: str) -> dict:
  """What a cohort of the population at `path` looks like, from its metadata, index and the
  test set's .npy header alone (no shard is read): {'capacity': N, 'row_shape': tuple,
  'num_classes': K, 'test_rows': T, 'max_class_count': the largest class count of any
  client (the resamplers' static bound)}. DataError as `read_metadata`, or naming the
  index or test file at fault."""
  meta = read_metadata(path)
  k = len(meta['class_names'])
  counts = _load_npy(index_path(path, 'class_counts'), INDEX_FIELDS['class_counts'],
                     (int(meta['num_clients']), k), mmap=True)
  test = _load_npy(os.path.join(path, 'test', 'x.npy'), np.float32, mmap=True)
  return {'capacity': int(meta['capacity']),
          'row_shape': tuple(int(d) for d in meta['row_shape']), 'num_classes': k,
          'test_rows': int(test.shape[0]),
          'max_class_count': int(counts.max()) if counts.size else 0}


def _load_npy(path: str, dtype=None, shape=None, mmap: bool = False) -> np.ndarray:
  """np.load of `path` checked against dtype and shape (None: any); DataError otherwise."""
  if not os.path.isfile(path):
    raise DataError(path, 'missing')
  try:
    a = np.load(path, mmap_mode='r' if mmap else None, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise DataError(path, f'truncated or not a .npy file ({str(e).splitlines()[0]})')
  if dtype is not None and a.dtype != np.dtype(dtype):
    raise DataError(path, f'holds {a.dtype}, expected {np.dtype(dtype)}')
  if shape is not None and tuple(a.shape) != tuple(shape):
    raise DataError(path, f'has shape {tuple(a.shape)}, expected {tuple(shape)}')
  return a


def _check_index(path: str, meta: dict, index: dict) -> None:
  """DataError where the index disagrees with itself or with the shards' row counts."""
  c, shard_rows = meta['num_clients'], np.asarray(meta['shard_rows'], np.int64)
  rows, stored, shard, offset = (index[k] for k in ('rows', 'stored', 'shard', 'offset'))
  where = index_path(path, 'rows')
  if np.any(rows < 1) or np.any(rows > stored) or np.any(stored > meta['capacity']):
    raise DataError(where, f'row counts outside [1, stored <= capacity {meta["capacity"]}]')
  if not np.array_equal(index['class_counts'].sum(axis=1), rows):
    raise DataError(index_path(path, 'class_counts'), 'do not sum to index/rows.npy')
  if np.any(shard < 0) or np.any(shard >= len(shard_rows)):
    raise DataError(index_path(path, 'shard'), f'names a shard outside 0..{len(shard_rows) - 1}')
  if np.any(offset < 0) or np.any(offset + stored > shard_rows[shard]):
    raise DataError(index_path(path, 'offset'), 'points past the end of a shard')
  if not np.array_equal(np.bincount(shard, weights=stored, minlength=len(shard_rows)),
                        shard_rows) or c != len(rows):
    raise DataError(index_path(path, 'stored'), 'row counts disagree with the shards')
  order = np.lexsort((offset, shard))
  ends = offset[order] + stored[order]
  first = np.r_[True, shard[order][1:] != shard[order][:-1]]
  if np.any(offset[order] != np.where(first, 0, np.r_[0, ends[:-1]])):
    raise DataError(index_path(path, 'offset'), 'clients overlap or leave gaps in a shard')


class PopulationStore:
  """A population directory opened for reading (`open`); a `CohortSource`.

  num_clients: C. capacity: N, the rows per client slot (the in-memory padding).
  row_shape: one row of x. class_names: K names. test: TestData float32[T, *row_shape].
  storage_dtype: 'float32' | 'float16' | 'uint8'. metadata: metadata.json as a dict.
  rows: int32[C] real rows per client. class_counts: int32[C, K].
  moments: (count, sum, sum_sq) float64 population moments of the real rows (stats.npz).
  cohort and attackers are safe to call from several threads at once.
  """

  def __init__(self, path: str):
    self.path = path
    meta = read_metadata(path)
    self.metadata = meta
    self.num_clients = int(meta['num_clients'])
    self.capacity = int(meta['capacity'])
    self.row_shape = tuple(int(d) for d in meta['row_shape'])
    self.class_names = tuple(meta['class_names'])
    self.storage_dtype = meta['storage_dtype']
    c, k = self.num_clients, len(self.class_names)
    index = {name: _load_npy(index_path(path, name), dtype,
                             (c, k) if name == 'class_counts' else (c,))
             for name, dtype in INDEX_FIELDS.items()}
    _check_index(path, meta, index)
    self._shard, self._offset, self._stored = index['shard'], index['offset'], index['stored']
    self.rows, self.class_counts = index['rows'], index['class_counts']
    self._attackers = (_load_npy(index_path(path, 'attackers'), bool, (c,))
                       if meta.get('attackers') else None)
    self._row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(
        self.storage_dtype).itemsize
    self._x_files, self._y_files = [], []
    self._x_start, self._y_start = [], []
    try:
      for s, n in enumerate(meta['shard_rows']):
        for kind, dtype, shape, files, starts in (
            ('x', self.storage_dtype, (n,) + self.row_shape, self._x_files, self._x_start),
            ('y', np.int32, (n,), self._y_files, self._y_start)):
          name = shard_path(path, kind, s)
          a = _load_npy(name, dtype, shape, mmap=True)
          starts.append(a.offset)
          del a
          files.append(os.open(name, os.O_RDONLY))
      self.test = TestData(*self._read_test(path))
      stats = self._read_stats(path)
    except BaseException:
      self.close()
      raise
    self.moments = stats
    self._pool = concurrent.futures.ThreadPoolExecutor(READ_THREADS)

  def _read_test(self, path):
    x = _load_npy(os.path.join(path, 'test', 'x.npy'), np.float32)
    if x.shape[1:] != self.row_shape:
      raise DataError(os.path.join(path, 'test', 'x.npy'), f'rows of shape {x.shape[1:]}, '
                      f'expected {self.row_shape}')
    y = _load_npy(os.path.join(path, 'test', 'y.npy'), np.int32, x.shape[:1])
    return x, y, np.ones(len(y), bool)

  def _read_stats(self, path):
    name = os.path.join(path, 'stats.npz')
    if not os.path.isfile(name):
      raise DataError(name, 'missing')
    try:
      with np.load(name, allow_pickle=False) as f:
        stats = tuple(np.asarray(f[k], np.float64) for k in ('count', 'sum', 'sum_sq'))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
      raise DataError(name, f'truncated or unreadable ({str(e).splitlines()[0]})')
    if stats[1].shape != self.row_shape or stats[2].shape != self.row_shape:
      raise DataError(name, f'statistics of shape {stats[1].shape}, expected {self.row_shape}')
    return stats

  def _ids(self, client_ids) -> np.ndarray:
    ids = np.asarray(client_ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
      raise ValueError(f'client_ids must be a 1-D int array, got {ids.dtype}{list(ids.shape)}')
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= self.num_clients):
      bad = ids[(ids < 0) | (ids >= self.num_clients)][0]
      raise DataError(self.path, f'has clients 0..{self.num_clients - 1}; asked for client {bad}')
    return ids

  def cohort(self, client_ids) -> ClientData:
    """The clients `client_ids` (int[P], any order, repeats allowed):
    x float32[P, N, *row_shape], y int32[P, N], mask bool[P, N], client_id int32[P];
    exactly `load.load_federated`'s rows of those clients (raw, before --standardize)."""
    ids = self._ids(client_ids)
    p, n = len(ids), self.capacity
    x = np.zeros((p, n) + self.row_shape, self.storage_dtype)
    y = np.zeros((p, n), np.int32)
    rows = self.rows[ids]
    shard, offset, stored = self._shard[ids], self._offset[ids], self._stored[ids]
    xb, yb = x.reshape(p, -1).view(np.uint8), y.view(np.uint8)

    def read(i):
      s, first, count = int(shard[i]), int(offset[i]), int(stored[i])
      _pread(self._x_files[s], xb[i, :count * self._row_bytes],
             self._x_start[s] + first * self._row_bytes)
      _pread(self._y_files[s], yb[i, :count * 4], self._y_start[s] + first * 4)

    list(self._pool.map(read, range(p), chunksize=max(1, p // (4 * READ_THREADS))))
    mask = np.arange(n)[None, :] < rows[:, None]
    return ClientData(to_float32(x), y, mask, ids.astype(np.int32))

  @property
  def max_class_count(self) -> int:
    """The largest per-class count of real rows over all clients: the static resampling
    bound the in-memory run takes from its data (`federated.max_class_count`)."""
    return int(self.class_counts.max()) if self.class_counts.size else 0

  def check_config(self, cfg) -> None:
    """DataError naming the first data flag of `cfg` (a RunConfig) that differs from the
    flags that built this population (row shape, classes, partition, seeds, attackers)."""
    check_config(self.metadata, cfg, self.path)

  def attackers(self, client_ids) -> np.ndarray | None:
    """bool[P]: which of `client_ids` are attackers, or None (the flags made none)."""
    ids = self._ids(client_ids)
    return None if self._attackers is None else self._attackers[ids]

  def close(self) -> None:
    """Closes the shard files (cohort cannot be called after)."""
    for fd in self._x_files + self._y_files:
      os.close(fd)
    self._x_files, self._y_files = [], []
    pool = getattr(self, '_pool', None)
    if pool is not None:
      pool.shutdown(wait=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _pread(fd: int, buffer: np.ndarray, position: int) -> None:
  """Fills the uint8 `buffer` from file `fd` at byte `position`; DataError if the file ends."""
  view = memoryview(buffer)
  done = 0
  while done < len(view):
    got = os.preadv(fd, [view[done:]], position + done)
    if got == 0:
      raise DataError(os.readlink(f'/proc/self/fd/{fd}') if os.path.exists('/proc/self/fd')
                      else f'fd {fd}', 'ends before the rows the index names (truncated)')
    done += got


def open(path: str) -> PopulationStore:  # pylint: disable=redefined-builtin
  """Opens the population directory `path` for reading.

  Raises:
    DataError: missing, half-written or truncated population, or an index that
      disagrees with the shards (one line naming the file).
  """
  return PopulationStore(path)
