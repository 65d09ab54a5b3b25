"""The on-disk population: fedar-population's writer, the reader, and their bad input."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fedar_jax import config
from fedar_jax.data import cohort_scaling
from fedar_jax.data import load
from fedar_jax.data import population_store
from fedar_jax.data import population_writer
from fedar_jax.data import standardize
from fedar_jax.data.cohort_source import InMemorySource
from fedar_jax.data.errors import DataError
from fedar_jax.data.pattern_faces import write_fer2013_csv

SMALL = dict(num_clients=50, samples_per_client=8, feature_dim=4, test_per_class=5,
             imbalance_ratio=3.0)
IDS = np.array([3, 49, 3, 0, 17, 22, 31, 8])


def small_cfg(**kw):
  return config.validate(config.RunConfig(**{**SMALL, **kw}))


def write_latent_csv(path, n=120, d=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = rng.permutation(np.arange(n) % 3)
  names = {0: 'Happy', 1: 'Sad', 2: 'Angry'}
  lines = [','.join([''] + [str(i) for i in range(d)] + ['Emotion', 'class'])]
  lines += [','.join([str(i)] + [repr(float(v)) for v in row] + [names[c], str(c)])
            for i, (row, c) in enumerate(zip(x, y))]
  path.write_text('\n'.join(lines) + '\n')


def assert_same_cohort(store, data, ids):
  got = store.cohort(ids)
  want = InMemorySource(data).cohort(ids)
  for name, a, b in zip(got._fields, got, want):
    assert a.dtype == b.dtype and np.array_equal(a, b), name


def assert_same_test(store, data):
  for a, b in zip(store.test, data.test):
    assert np.array_equal(a, np.asarray(b))


def written(tmp_path, cfg, **kw):
  out = str(tmp_path / 'pop')
  population_writer.write(cfg, out, **kw)
  return population_store.open(out)


def test_synthetic_round_trip_equals_load_federated(tmp_path):
  cfg = small_cfg(seed=3)
  store = written(tmp_path, cfg, per_shard=7)
  data = load.load_federated(cfg)
  assert (store.num_clients, store.capacity, store.row_shape) == (50, 8, (4,))
  assert store.class_names == data.class_names and store.storage_dtype == 'float32'
  assert store.metadata['num_shards'] == 8
  assert_same_cohort(store, data, IDS)
  assert_same_cohort(store, data, np.arange(50))
  assert_same_test(store, data)
  assert store.attackers(IDS) is None
  np.testing.assert_array_equal(store.class_counts.sum(axis=1), store.rows)


def test_synthetic_attackers_round_trip(tmp_path):
  """Skew attackers keep stale rows past their real ones; the cohort keeps them too."""
  cfg = small_cfg(attacker_fraction=0.3, attack='skew', attack_ratio=3.0)
  store = written(tmp_path, cfg, per_shard=16)
  data = load.load_federated(cfg)
  assert data.attackers.any() and (store.rows < store.capacity).any()
  assert_same_cohort(store, data, np.arange(50))
  np.testing.assert_array_equal(store.attackers(IDS), data.attackers[IDS])


def test_data_seed_draws_the_population(tmp_path):
  cfg = small_cfg(seed=1, data_seed=5)
  store = written(tmp_path, cfg)
  assert_same_cohort(store, load.load_federated(cfg.replace(seed=5)), IDS)


@pytest.mark.parametrize('partition', ['imbalance', 'quantity', 'dirichlet'])
def test_csv_round_trip(tmp_path, partition):
  path = tmp_path / 'f.csv'
  write_latent_csv(path)
  cfg = small_cfg(dataset='latent_csv', data_path=str(path), num_clients=6, samples_per_client=10,
                  test_per_class=4, partition=partition, imbalance_ratio=2.0)
  store = written(tmp_path, cfg, per_shard=4)
  data = load.load_federated(cfg)
  assert store.class_names == ('Happy', 'Sad', 'Angry')
  assert_same_cohort(store, data, np.array([5, 0, 2, 2, 1, 4, 3]))
  assert_same_test(store, data)
  assert store.metadata['partition'] == partition and store.metadata['source'] == str(path)


def test_images_stored_as_uint8_equal_in_memory(tmp_path):
  path = tmp_path / 'fer.csv'
  write_fer2013_csv(str(path), seed=0, per_class=[30, 30], emotions=(3, 4))
  cfg = small_cfg(dataset='fer2013', data_path=str(path), num_clients=3, samples_per_client=8,
                  test_per_class=3, image_size=12, imbalance_ratio=2.0)
  store = written(tmp_path, cfg)
  assert store.storage_dtype == 'uint8' and store.row_shape == (12, 12, 1)
  assert_same_cohort(store, load.load_federated(cfg), np.array([2, 0, 1]))


def test_float16_on_request(tmp_path):
  cfg = small_cfg()
  store = written(tmp_path, cfg, dtype='float16')
  data = load.load_federated(cfg)
  got = store.cohort(IDS)
  assert store.storage_dtype == 'float16' and got.x.dtype == np.float32
  np.testing.assert_array_equal(got.x, data.clients.x[IDS].astype(np.float16).astype(np.float32))
  assert os.path.getsize(population_store.shard_path(store.path, 'x', 0)) < 50 * 8 * 4 * 4


def test_uint8_refused_for_features(tmp_path):
  with pytest.raises(DataError, match='--population_dtype: uint8'):
    population_writer.write(small_cfg(), str(tmp_path / 'pop'), dtype='uint8')
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('mode', ['client', 'federated'])
def test_standardized_cohorts_equal_the_in_memory_run(tmp_path, mode):
  """Moments summed shard by shard equal the in-memory sum over all clients, bit for bit."""
  cfg = small_cfg(num_clients=300, samples_per_client=8, attacker_fraction=0.2)
  store = written(tmp_path, cfg, per_shard=37)
  data = load.load_federated(cfg)
  want = standardize.standardize(data, mode)
  got = cohort_scaling.standardized(store, mode)
  ids = np.array([299, 0, 150, 150, 37, 36, 74])
  for a, b in zip(got.cohort(ids), InMemorySource(want).cohort(ids)):
    assert np.array_equal(a, b)
  for a, b in zip(got.test, want.test):
    assert np.array_equal(a, b)
  assert cohort_scaling.standardized(store, 'none') is store


def test_resume_after_a_killed_write(tmp_path, monkeypatch):
  cfg = small_cfg()
  out = str(tmp_path / 'pop')
  real_load, loaded = population_writer._Source.load, []

  def dying_load(self, first, stop):
    loaded.append(first)
    if first == 21:
      raise KeyboardInterrupt
    return real_load(self, first, stop)
  monkeypatch.setattr(population_writer._Source, 'load', dying_load)
  with pytest.raises(KeyboardInterrupt):
    population_writer.write(cfg, out, per_shard=7)
  assert not os.path.exists(out) and os.path.isdir(out + '.partial')
  with pytest.raises(DataError, match='half-written.*rerun fedar-population'):
    population_store.open(out)
  loaded.clear()
  monkeypatch.setattr(population_writer._Source, 'load', lambda self, a, b: (
      loaded.append(a), real_load(self, a, b))[1])
  population_writer.write(cfg, out, per_shard=7)
  assert loaded[1:] == [21, 28, 35, 42, 49]  # Shards 0-2 were kept (loaded[0]: the shapes).
  assert not os.path.exists(out + '.partial')
  store = population_store.open(out)
  assert_same_cohort(store, load.load_federated(cfg), np.arange(50))
  assert set(os.listdir(os.path.join(out, 'shards'))) == {
      f'{k}-{s:05d}.npy' for k in 'xy' for s in range(8)}


def test_partial_with_other_flags_restarts(tmp_path):
  out = str(tmp_path / 'pop')
  os.makedirs(out + '.partial/shards')
  (tmp_path / 'pop.partial' / 'build.json').write_text('{"other": 1}')
  (tmp_path / 'pop.partial' / 'shards' / 'part-00000.npz').write_text('stale')
  cfg = small_cfg()
  population_writer.write(cfg, out)
  assert_same_cohort(population_store.open(out), load.load_federated(cfg), IDS)


def test_rerun_of_a_complete_population_changes_nothing(tmp_path):
  cfg = small_cfg()
  out = str(tmp_path / 'pop')
  population_writer.write(cfg, out)
  stamp = os.path.getmtime(os.path.join(out, 'metadata.json'))
  population_writer.write(cfg, out)
  assert os.path.getmtime(os.path.join(out, 'metadata.json')) == stamp
  with pytest.raises(DataError, match='--out: .* built with other flags'):
    population_writer.write(cfg.replace(seed=9), out)
  with pytest.raises(DataError, match='--out: .* built with other flags'):
    population_writer.write(cfg, out, dtype='float16')
  assert os.path.getmtime(os.path.join(out, 'metadata.json')) == stamp


def test_out_holding_something_else_is_refused(tmp_path):
  (tmp_path / 'pop').mkdir()
  (tmp_path / 'pop' / 'notes.txt').write_text('mine')
  with pytest.raises(DataError, match='--out: .* is not a population'):
    population_writer.write(small_cfg(), str(tmp_path / 'pop'))
  assert os.listdir(tmp_path / 'pop') == ['notes.txt']


def test_full_disk_is_one_line_and_resumable(tmp_path, monkeypatch):
  out = str(tmp_path / 'pop')
  real_save, calls = population_writer._save, []

  def save(path, array):
    calls.append(path)
    if len(calls) == 5:
      raise OSError(errno.ENOSPC, 'No space left on device', path + '.tmp')
    real_save(path, array)
  monkeypatch.setattr(population_writer, '_save', save)
  with pytest.raises(DataError, match=r'^--out: disk full writing .*x-00002\.npy\.tmp; free space'):
    population_writer.write(small_cfg(), out, per_shard=10)
  assert not os.path.exists(out)
  monkeypatch.setattr(population_writer, '_save', real_save)
  population_writer.write(small_cfg(), out, per_shard=10)
  assert_same_cohort(population_store.open(out), load.load_federated(small_cfg()), IDS)


def test_too_little_space_is_refused_before_writing(tmp_path, monkeypatch):
  monkeypatch.setattr(population_writer.shutil, 'disk_usage',
                      lambda p: type('U', (), {'free': 1000})())
  with pytest.raises(DataError, match='--out: needs up to .* GB; 0.00 GB free'):
    population_writer.write(small_cfg(), str(tmp_path / 'pop'))
  assert os.listdir(tmp_path) == []


@pytest.fixture
def pop(tmp_path):
  out = str(tmp_path / 'pop')
  population_writer.write(small_cfg(), out, per_shard=20)
  return out


def test_missing_population(tmp_path):
  with pytest.raises(DataError, match='absent: no such population directory'):
    population_store.open(str(tmp_path / 'absent'))


def test_missing_metadata(pop):
  os.remove(os.path.join(pop, 'metadata.json'))
  with pytest.raises(DataError, match='is not a complete population'):
    population_store.open(pop)


def test_truncated_metadata(pop):
  meta = os.path.join(pop, 'metadata.json')
  text = open(meta).read()
  open(meta, 'w').write(text[:len(text) // 2])
  with pytest.raises(DataError, match='metadata.json: unreadable'):
    population_store.open(pop)


def test_other_format_version(pop):
  meta = os.path.join(pop, 'metadata.json')
  d = json.load(open(meta))
  d['version'] = 99
  json.dump(d, open(meta, 'w'))
  with pytest.raises(DataError, match='format version 99'):
    population_store.open(pop)


@pytest.mark.parametrize('name', ['shards/x-00001.npy', 'shards/y-00002.npy',
                                  'index/offset.npy', 'test/x.npy', 'stats.npz'])
def test_truncated_file(pop, name):
  path = os.path.join(pop, name)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) - 9)
  with pytest.raises(DataError, match=f'{name}: truncated'):
    population_store.open(pop)


@pytest.mark.parametrize('name', ['shards/x-00001.npy', 'index/rows.npy'])
def test_missing_file(pop, name):
  os.remove(os.path.join(pop, name))
  with pytest.raises(DataError, match=f'{name}: missing'):
    population_store.open(pop)


@pytest.mark.parametrize('name,change,message', [
    ('rows', lambda a: a + 1, 'rows.npy: row counts outside'),
    ('class_counts', lambda a: a[:, ::-1] * 0, 'class_counts.npy: do not sum'),
    ('offset', lambda a: a + 3, 'offset.npy: points past the end'),
    ('shard', lambda a: a + 5, 'shard.npy: names a shard outside'),
    ('stored', lambda a: np.maximum(a - 1, 1), 'stored.npy: row counts disagree|rows.npy'),
    ('rows', lambda a: a[:-1], r'rows.npy: has shape \(49,\)'),
    ('offset', lambda a: a.astype(np.int32), 'offset.npy: holds int32'),
    ('offset', lambda a: np.r_[a[0], a[0], a[2:]], 'offset.npy: clients overlap'),
])
def test_index_disagreeing_with_shards(pop, name, change, message):
  path = population_store.index_path(pop, name)
  np.save(path, change(np.load(path)))
  with pytest.raises(DataError, match=message):
    population_store.open(pop)


def test_shard_of_other_dtype_or_row_shape(pop):
  path = population_store.shard_path(pop, 'x', 0)
  np.save(path, np.load(path).astype(np.float16))
  with pytest.raises(DataError, match='x-00000.npy: holds float16, expected float32'):
    population_store.open(pop)
  np.save(path, np.zeros((160, 5), np.float32))
  with pytest.raises(DataError, match=r'x-00000.npy: has shape \(160, 5\), expected \(160, 4\)'):
    population_store.open(pop)


def test_flags_differing_from_the_population(pop):
  store = population_store.open(pop)
  store.check_config(small_cfg())
  meta = store.metadata
  population_store.check_config(meta, small_cfg(standardize='client', rounds=3), pop)
  with pytest.raises(DataError, match=r'--feature_dim: is 5; .* built with 4'):
    population_store.check_config(meta, small_cfg(feature_dim=5), pop)
  with pytest.raises(DataError, match='--data_seed: draws the data with seed 2'):
    population_store.check_config(meta, small_cfg(seed=2), pop)
  population_store.check_config(meta, small_cfg(seed=2, data_seed=0), pop)


def test_cohort_outside_the_population(pop):
  store = population_store.open(pop)
  with pytest.raises(DataError, match='has clients 0..49; asked for client 50'):
    store.cohort(np.array([1, 50]))


def test_cohorts_from_threads(pop):
  import concurrent.futures
  store = population_store.open(pop)
  data = load.load_federated(small_cfg())
  rng = np.random.default_rng(0)
  cohorts = [rng.integers(0, 50, 20) for _ in range(16)]
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    got = list(pool.map(store.cohort, cohorts))
  for ids, c in zip(cohorts, got):
    np.testing.assert_array_equal(c.x, data.clients.x[ids])


def run_cli(*args):
  return subprocess.run([sys.executable, '-m', 'fedar_jax.population', *args],
                        capture_output=True, text=True, timeout=300)


def test_cli_writes_and_refuses_bad_flags(tmp_path):
  out = str(tmp_path / 'pop')
  flags = [f'--{k}={v}' for k, v in SMALL.items()]
  r = run_cli(f'--out={out}', '--clients_per_shard=20', *flags)
  assert r.returncode == 0, r.stderr
  assert 'population: 50 clients x 8 rows x (4,) float32' in r.stdout
  assert 'shard 3/3' in r.stderr
  assert_same_cohort(population_store.open(out), load.load_federated(small_cfg()), IDS)
  for bad, message in (([f'--out={out}', '--population_dtype=int8'], '--population_dtype:'),
                       ([f'--out={out}', '--seed=4'], '--out: ') ,
                       (['--num_clients=0'], '--num_clients:'),
                       ([], '--out: is required')):
    r = run_cli(*bad, *[f for f in flags if not f.startswith(tuple(b.split('=')[0] + '='
                                                                    for b in bad))])
    assert r.returncode == 2 and r.stderr.startswith('error: ' + message), (bad, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGKILL])
def test_cli_killed_mid_write_then_rerun_finishes(tmp_path, signum):
  out = tmp_path / 'pop'
  flags = [f'--out={out}', '--clients_per_shard=5', '--num_clients=2000',
           *[f'--{k}={v}' for k, v in SMALL.items() if k != 'num_clients']]
  proc = subprocess.Popen([sys.executable, '-m', 'fedar_jax.population', *flags],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 120
    while not (tmp_path / 'pop.partial' / 'shards' / 'part-00003.npz').exists():
      assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
      time.sleep(0.01)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode in (128 + signum, -signum), stderr
  if signum == signal.SIGTERM:
    assert stderr.strip().splitlines()[-1].startswith('interrupted; '), stderr
  assert not out.exists()
  with pytest.raises(DataError, match='half-written'):
    population_store.open(str(out))
  r = run_cli(*flags)
  assert r.returncode == 0, r.stderr
  cfg = small_cfg(num_clients=2000)
  ids = np.array([0, 1999, 17, 1000, 4, 5])
  assert_same_cohort(population_store.open(str(out)), load.load_federated(cfg), ids)
