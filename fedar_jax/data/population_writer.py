"""Writes a population directory (data/population_store.py's format) from a run's data flags.

`write(cfg, out)` loads the clients exactly as `load.load_federated` does for a
run (drawn with the effective data seed) and stores them shard by shard:
synthetic populations one shard of clients at a time (client c depends only on
(seed, c), so memory holds one shard whatever --num_clients), real sources
loaded whole and then split. Everything goes into OUT.partial; each shard's
files are renamed into place when written, and its summary (`part-SSSSS.npz`)
last, so a killed write keeps its finished shards; the index, test set,
statistics and metadata.json follow, and OUT.partial becomes OUT in one rename.
Rerunning the same command resumes OUT.partial; other flags restart it.
"""
import dataclasses
import errno
import json
import os
import shutil
import threading
import time

import numpy as np

from fedar_jax.data import load
from fedar_jax.data import population_store as store
from fedar_jax.data import standardize as standardize_lib
from fedar_jax.data.errors import DataError

SHARD_BYTES = 256 << 20  # Target size of one shard's x file.
MOMENT_CLIENTS = 512  # Clients whose float64 moments are computed at once.
BUILD = 'build.json'


def clients_per_shard(capacity: int, row_bytes: int, num_clients: int) -> int:
  """Clients per shard: about SHARD_BYTES of stored rows."""
  return max(1, min(num_clients, SHARD_BYTES // max(1, capacity * row_bytes)))


def choose_dtype(requested: str, x: np.ndarray) -> str:
  """The storage dtype for the float32 clients x[C, N, *row_shape]: `requested`, or (for '')
  uint8 for images (rows of rank 3) holding k/255 values, float32 otherwise."""
  if requested:
    return requested
  return 'uint8' if x.ndim == 5 and _uint8_exact(x) else 'float32'


def _uint8_exact(x: np.ndarray) -> bool:
  q = np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)
  return bool(np.array_equal(store.to_float32(q), x))


def to_storage(x: np.ndarray, dtype: str) -> np.ndarray:
  """float32 rows as `dtype`; DataError naming --population_dtype where they do not fit."""
  if dtype == 'float32':
    return x
  if dtype == 'uint8':
    if not _uint8_exact(x):
      raise DataError('--population_dtype', 'uint8 holds only k/255 values (8-bit images); '
                      'these rows are not: use float32 or float16')
    return np.rint(x * 255).astype(np.uint8)
  y = x.astype(np.float16)
  if not np.all(np.isfinite(y)):
    raise DataError('--population_dtype', 'float16 overflows on these rows (|x| > 65504): '
                    'use float32')
  return y


class _Source:
  """The clients to write, chunk by chunk: load(ids) -> FederatedDataset of those clients."""

  def __init__(self, cfg):
    self.cfg = cfg.replace(seed=cfg.effective_data_seed)
    self.synthetic = cfg.dataset == 'synthetic'
    self._whole = None if self.synthetic else load.load_federated(self.cfg)

  def load(self, first: int, stop: int):
    if self.synthetic:
      return load.load_federated(self.cfg, client_ids=range(first, stop))
    d = self._whole
    pick = slice(first, stop)
    return d._replace(clients=d.clients._replace(**{k: getattr(d.clients, k)[pick] for k in
                                                      ('x', 'y', 'mask', 'client_id')}),
                      attackers=None if d.attackers is None else d.attackers[pick])


def _stored_rows(x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
  """int32[P]: rows to store per client: its real rows, or all N where the rows past
  them are not zero (an attacker's masked rows keep data)."""
  n = y.shape[1]
  stored = rows.astype(np.int32)
  for c in np.flatnonzero(rows < n):
    if np.any(y[c, rows[c]:]) or np.any(x[c, rows[c]:]):
      stored[c] = n
  return stored


def _moments(x: np.ndarray, mask: np.ndarray):
  """`standardize.moments(x, mask)`, the same bits; without the mask's product when every
  row is real."""
  if not mask.all():
    return standardize_lib.moments(x, mask)
  xf = x.astype(np.float64)
  return (np.full(mask.shape[:1], mask.shape[1], np.float64), np.sum(xf, axis=1),
          np.sum(xf * xf, axis=1))


def _accumulate(running, x, mask):
  """Running (count, sum, sum_sq) plus clients x[P, N, ...]: the per-client moments added
  one client after another (the order numpy's sum over the client axis adds them)."""
  for first in range(0, x.shape[0], MOMENT_CLIENTS):
    part = _moments(x[first:first + MOMENT_CLIENTS], mask[first:first + MOMENT_CLIENTS])
    running = tuple(np.cumsum(np.concatenate([r[None], p.reshape((-1,) + r.shape)]), axis=0)[-1]
                    for r, p in zip(running, part))
  return running


def _save(path: str, array: np.ndarray) -> None:
  """np.save to path.tmp, then renamed to path (a reader never sees a partial file)."""
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    np.save(f, array, allow_pickle=False)
  os.replace(tmp, path)


def _save_npz(path: str, **arrays) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)


def _write_json(path: str, value: dict) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=1)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _part_path(root: str, shard: int) -> str:
  return os.path.join(root, 'shards', f'part-{shard:05d}.npz')


@dataclasses.dataclass
class Plan:
  """What a write produces: num_clients C, capacity N, clients per shard, storage dtype."""
  num_clients: int
  capacity: int
  per_shard: int
  dtype: str
  row_shape: tuple
  stored_rows: int | None = None  # Rows the shards hold in all (None: at most C * N).

  @property
  def num_shards(self) -> int:
    return -(-self.num_clients // self.per_shard)

  def shard_clients(self, s: int) -> tuple[int, int]:
    return s * self.per_shard, min(self.num_clients, (s + 1) * self.per_shard)

  def upper_bytes(self) -> int:
    """Bytes of the shards (at most: every client storing N rows, when not known)."""
    row = int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize
    rows = self.stored_rows
    return (self.num_clients * self.capacity if rows is None else rows) * (row + 4)


def _check_out(out: str, build: dict) -> bool:
  """True when `out` already holds this population; DataError when it holds anything
  else (nothing is changed)."""
  if not os.path.exists(out):
    return False
  if not os.path.isdir(out):
    raise DataError('--out', f'{out} exists and is not a directory')
  if not os.listdir(out):
    return False
  meta_file = os.path.join(out, store.METADATA)
  if not os.path.isfile(meta_file):
    raise DataError('--out', f'{out} exists and is not a population; choose another --out')
  meta = store.read_metadata(out)
  if meta.get('build') != build:
    raise DataError('--out', f'{out} holds a population built with other flags; choose '
                    'another --out or remove it')
  return True


def _check_space(parent: str, need: int) -> None:
  free = shutil.disk_usage(parent).free
  if need > free:
    raise DataError('--out', f'needs up to {need / 1e9:.2f} GB; {free / 1e9:.2f} GB free on '
                    f'{parent}')


def write(cfg, out: str, dtype: str = '', per_shard: int = 0, command: str = '',
          progress=None) -> dict:
  """Writes the population `cfg`'s data flags describe to directory `out`; returns its
  metadata. Resumes `out`.partial when it was started with the same flags.

  Args:
    cfg: a validated RunConfig (its data, attack and seed flags are used).
    out: the population directory to create.
    dtype: storage dtype ('float32', 'float16', 'uint8'; '' = uint8 for 8-bit images,
      float32 otherwise).
    per_shard: clients per shard (0: about 256 MiB of rows each).
    command: the command line, recorded in metadata.json.
    progress: called as progress(clients_done, num_clients, shards_done, num_shards).

  Raises:
    DataError: bad flags or data (one line naming the flag or file), an `out` that holds
      something else, too little disk space or a full disk.
  """
  out = os.path.normpath(out)
  partial = out + store.PARTIAL_SUFFIX
  build = {'version': store.VERSION, 'flags': store.population_flags(cfg),
           'storage_dtype': dtype, 'clients_per_shard': per_shard}
  if _check_out(out, build):
    return store.read_metadata(out)
  if os.path.isfile(os.path.join(partial, store.METADATA)):  # Killed before its rename.
    meta = store.read_metadata(partial)
    if meta.get('build') == build:
      _rename(partial, out)
      return meta
  source = _Source(cfg)
  c = cfg.num_clients
  first = source.load(0, min(c, max(1, per_shard or 1)))
  x0 = first.clients.x
  row_shape, capacity = tuple(x0.shape[2:]), int(x0.shape[1])
  whole_x = x0 if source.synthetic else source._whole.clients.x  # pylint: disable=protected-access
  chosen = choose_dtype(dtype, whole_x)
  to_storage(whole_x, chosen)  # Refuses a dtype that cannot hold the rows before writing.
  row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(chosen).itemsize
  stored_rows = None
  if not source.synthetic:
    whole = source._whole.clients  # pylint: disable=protected-access
    stored_rows = int(_stored_rows(whole.x, whole.y, whole.mask.sum(axis=1)).sum())
  plan = Plan(c, capacity, per_shard or clients_per_shard(capacity, row_bytes, c), chosen,
              row_shape, stored_rows)
  parent = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(parent):
    raise DataError('--out', f'{parent} is not a directory')
  try:
    return _write(cfg, source, plan, build, out, partial, parent, command, progress)
  except OSError as e:
    if e.errno == errno.ENOSPC:
      raise DataError('--out', f'disk full writing {getattr(e, "filename", None) or partial}; '
                      'free space and rerun the same command to resume')
    raise


def _same_build(partial: str, build: dict) -> bool:
  """Whether `partial` was started by a write with this `build`."""
  try:
    with open(os.path.join(partial, BUILD)) as f:
      return json.load(f) == build
  except (OSError, ValueError):
    return False


def _write(cfg, source, plan: Plan, build, out, partial, parent, command, progress) -> dict:
  same = _same_build(partial, build)
  done = 0
  while same and done < plan.num_shards and os.path.isfile(_part_path(partial, done)):
    done += 1
  _check_space(parent, plan.upper_bytes() * (plan.num_shards - done) // plan.num_shards)
  if not same:  # Absent, or started with other flags: start afresh.
    if os.path.isdir(partial):
      shutil.rmtree(partial)
    os.makedirs(os.path.join(partial, 'shards'))
    _write_json(os.path.join(partial, BUILD), build)
  running = (np.zeros(()), np.zeros(plan.row_shape), np.zeros(plan.row_shape))
  if done:
    with np.load(_part_path(partial, done - 1)) as f:
      running = (f['count'], f['sum'], f['sum_sq'])
  if progress:
    progress(plan.shard_clients(done)[0], plan.num_clients, done, plan.num_shards)
  test = class_names = None
  writer = _ShardWriter()
  try:
    test, class_names = _write_shards(source, plan, partial, done, running, writer, progress)
  finally:
    writer.close()  # The shard being saved is finished (or its error raised).
  if test is None:  # Every shard was written by an earlier invocation.
    data = source.load(0, min(1, plan.num_clients))
    test, class_names = data.test, data.class_names
  meta = _finish(cfg, plan, build, partial, test, class_names, command)
  _rename(partial, out)
  return meta


def _write_shards(source, plan, partial, done, running, writer, progress):
  """Shards done .. num_shards - 1 of `plan`; returns (test set, class names) or (None, None).
  Shard s is summarised and saved on the writer's thread while shard s + 1 is loaded."""
  test = class_names = None
  state = {'running': running}
  for s in range(done, plan.num_shards):
    lo, hi = plan.shard_clients(s)
    data = source.load(lo, hi)
    test, class_names = data.test, data.class_names

    def save(s=s, hi=hi, data=data):
      _save_shard(partial, s, data, plan.dtype, state)
      if progress:
        progress(hi, plan.num_clients, s + 1, plan.num_shards)
    writer.put(save)
  return test, class_names


def _class_counts(y: np.ndarray, mask: np.ndarray, num_classes: int) -> np.ndarray:
  """int32[P, K]: real rows per class of each client (y int32[P, N], mask bool[P, N])."""
  owner = np.broadcast_to(np.arange(len(y))[:, None], y.shape)
  flat = owner[mask].astype(np.int64) * num_classes + y[mask]
  return np.bincount(flat, minlength=len(y) * num_classes).reshape(
      len(y), num_classes).astype(np.int32)


def _save_shard(partial, s, data, dtype, state) -> None:
  """Shard s's rows, labels, then its summary (part-SSSSS.npz: row counts, class counts,
  attackers, the population moments up to this shard): `state['running']` moves on."""
  x, y, mask = data.clients.x, data.clients.y, data.clients.mask
  rows = mask.sum(axis=1).astype(np.int32)
  if not np.array_equal(mask, np.arange(mask.shape[1])[None, :] < rows[:, None]):
    raise ValueError('client rows must be the first `rows` of each slot')
  stored = _stored_rows(x, y, rows)
  running = state['running'] = _accumulate(state['running'], x, mask)
  keep = np.arange(mask.shape[1])[None, :] < stored[:, None]
  part = dict(rows=rows, stored=stored,
              class_counts=_class_counts(y, mask, len(data.class_names)),
              count=running[0], sum=running[1], sum_sq=running[2])
  if data.attackers is not None:
    part['attackers'] = np.asarray(data.attackers, bool)
  rows_x = x.reshape((-1,) + x.shape[2:]) if keep.all() else x[keep]
  _save(store.shard_path(partial, 'x', s), to_storage(rows_x, dtype))
  _save(store.shard_path(partial, 'y', s), y.reshape(-1) if keep.all() else y[keep])
  _save_npz(_part_path(partial, s), **part)


def _rename(partial: str, out: str) -> None:
  """The finished `partial` becomes `out` (an empty directory or absent: checked)."""
  if os.path.isdir(out):
    os.rmdir(out)
  os.replace(partial, out)


class _ShardWriter:
  """Saves shards on a thread of its own, one behind the loop that makes them (the rows
  of shard s+1 are drawn while shard s is written). Errors surface at the next put/close."""

  def __init__(self):
    self._thread = None
    self._error = None

  def _join(self):
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    if self._error is not None:
      error, self._error = self._error, None
      raise error

  def put(self, fn):
    """Runs fn() on the writer's thread once the previous one is done."""
    self._join()

    def run():
      try:
        fn()
      except BaseException as e:  # pylint: disable=broad-except
        self._error = e
    self._thread = threading.Thread(target=run, daemon=True)
    self._thread.start()

  def close(self):
    self._join()


def _finish(cfg, plan: Plan, build, partial, test, class_names, command) -> dict:
  """Index, test set, statistics, then metadata.json (last) in `partial`."""
  parts = []
  for s in range(plan.num_shards):
    with np.load(_part_path(partial, s)) as f:
      parts.append({k: f[k] for k in f.files})
  stored = [p['stored'] for p in parts]
  shard_rows = [int(v.sum()) for v in stored]
  index = {
      'shard': np.concatenate([np.full(len(v), s, np.int32) for s, v in enumerate(stored)]),
      'offset': np.concatenate([np.cumsum(v, dtype=np.int64) - v for v in stored]),
      'stored': np.concatenate(stored).astype(np.int32),
      'rows': np.concatenate([p['rows'] for p in parts]).astype(np.int32),
      'class_counts': np.concatenate([p['class_counts'] for p in parts]).astype(np.int32)}
  attackers = 'attackers' in parts[0]
  if attackers:
    index['attackers'] = np.concatenate([p['attackers'] for p in parts])
  os.makedirs(os.path.join(partial, 'index'), exist_ok=True)
  for name, array in index.items():
    _save(store.index_path(partial, name), array)
  os.makedirs(os.path.join(partial, 'test'), exist_ok=True)
  _save(os.path.join(partial, 'test', 'x.npy'), np.asarray(test.x, np.float32))
  _save(os.path.join(partial, 'test', 'y.npy'), np.asarray(test.y, np.int32))
  last = parts[-1]
  _save_npz(os.path.join(partial, 'stats.npz'), count=last['count'], sum=last['sum'],
            sum_sq=last['sum_sq'])
  shard_bytes = sum(os.path.getsize(store.shard_path(partial, k, s))
                    for s in range(plan.num_shards) for k in 'xy')
  meta = {
      'format': store.FORMAT, 'version': store.VERSION,
      'num_clients': plan.num_clients, 'capacity': plan.capacity,
      'row_shape': list(plan.row_shape), 'storage_dtype': plan.dtype,
      'class_names': list(class_names), 'attackers': attackers,
      'num_shards': plan.num_shards, 'clients_per_shard': plan.per_shard,
      'shard_rows': shard_rows, 'shard_bytes': shard_bytes,
      'dataset': cfg.dataset, 'source': cfg.data_path or cfg.data_dir or cfg.dataset,
      'partition': 'imbalance' if cfg.dataset == 'synthetic' else cfg.partition,
      'seed': cfg.seed, 'data_seed': cfg.effective_data_seed,
      'standardization': 'raw rows; stats.npz holds the moments of --standardize=federated',
      'flags': store.population_flags(cfg), 'build': build, 'command': command,
      'written': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
  _write_json(os.path.join(partial, store.METADATA), meta)
  for s in range(plan.num_shards):
    os.remove(_part_path(partial, s))
  os.remove(os.path.join(partial, BUILD))
  return meta
