"""The data source's fingerprint: what changes it, what does not."""
import os

from fedar_jax import data_fingerprint


def test_a_file_is_known_by_its_content_when_hashed(tmp_path):
  path = tmp_path / 'x.csv'
  path.write_text('0,1,class\n1.5,2,0\n')
  first = data_fingerprint.of('latent_csv', str(path))
  assert first['sha256'] and first['size'] == path.stat().st_size
  os.utime(path, ns=(1, 1))  # Same content, other time: the same data.
  assert data_fingerprint.difference(first, data_fingerprint.of('latent_csv', str(path))) is None
  path.write_text('0,1,class\n-1.5,2,0\n')
  what = data_fingerprint.difference(first, data_fingerprint.of('latent_csv', str(path)))
  assert what.startswith('its content changed (SHA-256'), what
  moved = tmp_path / 'moved.csv'  # The same content elsewhere: the same data.
  moved.write_text('0,1,class\n1.5,2,0\n')
  assert data_fingerprint.difference(first, data_fingerprint.of('latent_csv', str(moved))) is None


def test_a_large_file_is_known_by_size_and_time(tmp_path, monkeypatch):
  monkeypatch.setattr(data_fingerprint, 'HASH_LIMIT', 4)
  path = tmp_path / 'x.csv'
  path.write_text('0,1,class\n')
  first = data_fingerprint.of('fer2013', str(path))
  assert 'sha256' not in first
  os.utime(path, ns=(5, 5))
  what = data_fingerprint.difference(first, data_fingerprint.of('fer2013', str(path)))
  assert what.startswith('its modification time (ns) changed'), what


def test_a_special_file_is_not_read(tmp_path):
  assert 'sha256' not in data_fingerprint.of('latent_csv', '/dev/zero')  # Would never end.
  gone = data_fingerprint.of('latent_csv', str(tmp_path / 'gone.csv'))
  assert gone['missing'] and data_fingerprint.difference(gone, gone) is None
  (tmp_path / 'here.csv').write_text('0,class\n')
  here = data_fingerprint.of('latent_csv', str(tmp_path / 'here.csv'))
  assert data_fingerprint.difference(here, gone) == f"{gone['path']!r} is missing now"


def test_an_image_folder_is_known_by_its_listing(tmp_path):
  for name in ('a/1.png', 'b/2.png'):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(b'png')
  first = data_fingerprint.of('image_folder', data_dir=str(tmp_path))
  assert first['entries'] == 4  # Two folders, two files.
  assert data_fingerprint.of('image_folder', data_dir=str(tmp_path)) == first
  (tmp_path / 'b' / '3.png').write_bytes(b'png')
  what = data_fingerprint.difference(first, data_fingerprint.of('image_folder',
                                                                data_dir=str(tmp_path)))
  assert what == 'its number of entries changed (4 -> 5)'


def test_tfds_records_name_split_and_versions(tmp_path):
  (tmp_path / 'mnist' / '3.0.1').mkdir(parents=True)
  first = data_fingerprint.of('tfds:mnist', data_dir=str(tmp_path), tfds_split='train')
  assert (first['name'], first['split'], first['versions']) == ('mnist', 'train', ['3.0.1'])
  other = data_fingerprint.of('tfds:mnist', data_dir=str(tmp_path), tfds_split='test')
  assert data_fingerprint.difference(first, other) == 'its split changed (train -> test)'
  (tmp_path / 'mnist' / '3.0.2').mkdir()
  now = data_fingerprint.of('tfds:mnist', data_dir=str(tmp_path), tfds_split='train')
  assert data_fingerprint.difference(first, now).startswith('its versions changed')


def test_synthetic_data_is_its_flags():
  assert data_fingerprint.of('synthetic') == {'source': 'synthetic'}


def test_a_population_is_its_metadata_and_file_sizes(tmp_path):
  import shutil
  from types import SimpleNamespace
  pop = tmp_path / 'pop'
  (pop / 'shards').mkdir(parents=True)
  (pop / 'metadata.json').write_text('{"num_clients": 4}')
  (pop / 'shards' / 'x_0.npy').write_bytes(b'\0' * 64)
  cfg = SimpleNamespace(population=str(pop), dataset='synthetic', data_path='', data_dir='',
                        tfds_split='')
  first = data_fingerprint.of_config(cfg)
  assert first['source'] == 'population' and first['entries'] == 2
  copy = tmp_path / 'copy'
  shutil.copytree(pop, copy)  # Other times and place: the same population.
  assert data_fingerprint.difference(first, data_fingerprint.of_population(str(copy))) is None
  (pop / 'shards' / 'x_0.npy').write_bytes(b'\0' * 32)
  what = data_fingerprint.difference(first, data_fingerprint.of_population(str(pop)))
  assert what.startswith('its listing'), what
  (pop / 'metadata.json').write_text('{"num_clients": 5}')
  what = data_fingerprint.difference(first, data_fingerprint.of_population(str(pop)))
  assert 'metadata.json changed' in what
  shutil.rmtree(pop)
  assert 'missing' in data_fingerprint.difference(first, data_fingerprint.of_population(str(pop)))
