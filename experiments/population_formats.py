"""Which shard format a population uses: .npy shards vs ArrayRecord, measured.

  python experiments/population_formats.py --clients=1000000 --dir=/tmp/formats

Writes the same random rows (clients x 32 x 64 float32, 32,768 clients per
shard) as .npy shards and as ArrayRecord files (`array_record`, one record per
client, group_size:1, uncompressed), then gathers 5 random cohorts of 1,000
clients three ways: the .npy shards memory-mapped (one slice per client), the
.npy shards read with os.preadv from 8 threads (what population_store does),
and ArrayRecordReader.read(indices). Each cohort is read cold (the files'
cached pages dropped with posix_fadvise DONTNEED) and then warm; medians.
Prints one JSON line; the files are removed afterwards. --clients must be at least
1,000 (the smallest run: --clients=1000).
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import time

import numpy as np
from array_record.python import array_record_module

ROWS, DIMS, PER_SHARD, COHORT = 32, 64, 32768, 1000


def drop_cache(paths):
  for p in paths:
    fd = os.open(p, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def write_npy(root, clients, block):
  paths = []
  for s in range(0, clients, PER_SHARD):
    paths.append(f'{root}/x-{s // PER_SHARD:05d}.npy')
    np.save(paths[-1], block[:min(PER_SHARD, clients - s)])
  return paths


def write_array_record(root, clients, block):
  paths = []
  for s in range(0, clients, PER_SHARD):
    paths.append(f'{root}/x-{s // PER_SHARD:05d}.array_record')
    w = array_record_module.ArrayRecordWriter(paths[-1], 'group_size:1,uncompressed')
    for r in block[:min(PER_SHARD, clients - s)]:
      w.write(r.tobytes())
    w.close()
  return paths


def gatherers(npy, records):
  maps = [np.load(p, mmap_mode='r') for p in npy]
  fds = [os.open(p, os.O_RDONLY) for p in npy]
  pool = concurrent.futures.ThreadPoolExecutor(8)
  readers = [array_record_module.ArrayRecordReader(p, 'readahead_buffer_size:0')
             for p in records]
  row = ROWS * DIMS * 4

  def memory_map(ids):
    x = np.empty((len(ids), ROWS, DIMS), np.float32)
    for i, c in enumerate(ids):
      x[i] = maps[c // PER_SHARD][c % PER_SHARD]
    return x

  def pread(ids):
    x = np.empty((len(ids), ROWS, DIMS), np.float32)

    def one(i):
      c = int(ids[i])
      os.preadv(fds[c // PER_SHARD], [memoryview(x[i]).cast('B')],
                maps[c // PER_SHARD].offset + (c % PER_SHARD) * row)
    list(pool.map(one, range(len(ids))))
    return x

  def array_record(ids):
    x = np.empty((len(ids), ROWS, DIMS), np.float32)
    for s in np.unique(ids // PER_SHARD):
      sel = np.flatnonzero(ids // PER_SHARD == s)
      for i, r in zip(sel, readers[s].read((ids[sel] % PER_SHARD).tolist())):
        x[i] = np.frombuffer(r, np.float32).reshape(ROWS, DIMS)
    return x
  return {'npy_mmap': (memory_map, npy), 'npy_pread': (pread, npy),
          'array_record': (array_record, records)}


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--clients', type=int, default=1_000_000)
  parser.add_argument('--dir', default='/tmp/population_formats')
  args = parser.parse_args()
  if args.clients < COHORT:
    print(f'--clients={args.clients}: must be at least the cohort, {COHORT}', file=sys.stderr)
    sys.exit(2)
  os.makedirs(args.dir, exist_ok=True)
  block = np.random.default_rng(0).standard_normal((PER_SHARD, ROWS, DIMS), dtype=np.float32)
  out = {'clients': args.clients, 'rows': ROWS, 'dims': DIMS, 'cohort': COHORT}
  written = {}
  for name, write in (('npy', write_npy), ('array_record', write_array_record)):
    t = time.perf_counter()
    written[name] = write(args.dir, args.clients, block)
    os.sync()
    out[f'{name}_write_s'] = round(time.perf_counter() - t, 2)
    out[f'{name}_gb'] = round(sum(os.path.getsize(p) for p in written[name]) / 1e9, 3)
  rng = np.random.default_rng(1)
  for name, (gather, paths) in gatherers(written['npy'], written['array_record']).items():
    cold, warm = [], []
    for _ in range(5):
      ids = rng.choice(args.clients, COHORT, replace=False)
      drop_cache(paths)
      t = time.perf_counter()
      first = gather(ids)
      cold.append(time.perf_counter() - t)
      t = time.perf_counter()
      again = gather(ids)
      warm.append(time.perf_counter() - t)
      assert np.array_equal(first, again) and np.array_equal(first[0], block[ids[0] % PER_SHARD])
    out[f'{name}_cold_ms'] = round(1e3 * float(np.median(cold)), 1)
    out[f'{name}_warm_ms'] = round(1e3 * float(np.median(warm)), 1)
  out['load_average'] = round(os.getloadavg()[0], 1)
  print(json.dumps(out))
  shutil.rmtree(args.dir)


if __name__ == '__main__':
  main()
