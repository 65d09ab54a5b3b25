"""A fingerprint of a run's data source, so a resume can tell that the data changed.

Host-side only (no JAX, no data loading), so the command line checks it before
compiling anything. The fingerprint is a JSON object kept in the workdir's
settings file (config.json / sweep.json, key `data_fingerprint`) and in every
checkpoint:

  synthetic      {'source': 'synthetic'}: the data is a function of the flags.
  a file         (--data_path: latent_csv, fer2013) path, size, modification
                 time, and the SHA-256 of the content for files up to HASH_LIMIT
                 bytes; when both sides have a hash, equal hashes mean the same
                 data whatever the time or place.
  a directory    (--data_dir: image_folder) path, file count and the SHA-256 of
                 the listing (relative path, size and modification time of every
                 entry below it).
  tfds:NAME      name, split, the version directories prepared under --data_dir
                 and the listing of the dataset's folder.
  --population   the population directory (fedar-population): the SHA-256 of its
                 metadata.json (the flags and seeds that wrote it) and of its file
                 names and sizes; times are left out, so a copied population is the
                 same population.
"""
import hashlib
import os
import stat

# Files up to this size are hashed in full (~0.1 s per 64 MiB); larger ones are known by
# path, size and modification time.
HASH_LIMIT = 64 * 2 ** 20
# Directory listings stop after this many entries (the count says so).
LISTING_LIMIT = 1_000_000


def of(dataset: str, data_path: str = '', data_dir: str = '', tfds_split: str = '') -> dict:
  """The fingerprint of the data source named by these flags (see the module docstring)."""
  if dataset.startswith('tfds:'):
    name = dataset[5:]
    root = data_dir or os.environ.get('TFDS_DATA_DIR') or os.path.expanduser(
        '~/tensorflow_datasets')
    folder = os.path.join(root, name.split(':')[0].split('/')[0])
    listing = _listing(folder)
    return {'source': 'tfds', 'name': name, 'split': tfds_split,
            'versions': _versions(folder), **listing}
  if dataset in ('latent_csv', 'fer2013'):
    return _file(data_path)
  if dataset == 'image_folder':
    return _listing(data_dir)
  return {'source': dataset}


def of_config(cfg) -> dict:
  """`of` for a RunConfig; a streamed run's (--population) is its population's."""
  if getattr(cfg, 'population', ''):
    return of_population(cfg.population)
  return of(cfg.dataset, cfg.data_path, cfg.data_dir, cfg.tfds_split)


def of_population(folder: str) -> dict:
  """A population directory's fingerprint (see the module docstring)."""
  out = {'source': 'population', 'path': os.path.abspath(folder)}
  metadata = _hash_file(os.path.join(folder, 'metadata.json'))
  if metadata is None:
    return {**out, 'missing': True}
  digest, count = hashlib.sha256(), 0
  for top, dirs, files in os.walk(folder, onerror=lambda e: None):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(top, name)
      try:
        size = os.lstat(path).st_size
      except OSError:
        continue
      digest.update(f'{os.path.relpath(path, folder)}\0{size}\n'.encode(errors='surrogateescape'))
      count += 1
  return {**out, 'sha256': metadata, 'entries': count, 'listing_sha256': digest.hexdigest()}


def _file(path: str) -> dict:
  out = {'source': 'file', 'path': os.path.abspath(path)}
  try:
    st = os.stat(path)
  except OSError:
    return {**out, 'missing': True}
  out.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
  if stat.S_ISREG(st.st_mode) and st.st_size <= HASH_LIMIT:
    out['sha256'] = _hash_file(path)
  return out


def _hash_file(path: str) -> str | None:
  digest = hashlib.sha256()
  try:
    with open(path, 'rb') as f:
      for block in iter(lambda: f.read(2 ** 20), b''):
        digest.update(block)
  except OSError:
    return None
  return digest.hexdigest()


def _listing(folder: str) -> dict:
  """Path, entry count and a hash of (relative path, size, mtime) of every entry below
  `folder` (symlinks not followed)."""
  out = {'source': 'directory', 'path': os.path.abspath(folder)}
  if not os.path.isdir(folder):
    return {**out, 'missing': True}
  digest, count = hashlib.sha256(), 0
  for top, dirs, files in os.walk(folder, onerror=lambda e: None):
    dirs.sort()
    for name in sorted(files) + dirs:
      path = os.path.join(top, name)
      try:
        st = os.lstat(path)
      except OSError:
        continue
      size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
      digest.update(f'{os.path.relpath(path, folder)}\0{size}\0{st.st_mtime_ns}\n'
                    .encode(errors='surrogateescape'))
      count += 1
      if count >= LISTING_LIMIT:
        return {**out, 'entries': count, 'listing_sha256': digest.hexdigest()}
  return {**out, 'entries': count, 'listing_sha256': digest.hexdigest()}


def _versions(folder: str) -> list[str]:
  """The version directories ('1.0.0', 'config/1.0.0') up to two levels below a TFDS
  dataset folder."""
  found = []
  for top, dirs, _ in os.walk(folder, onerror=lambda e: None):
    rel = os.path.relpath(top, folder)
    found += [os.path.normpath(os.path.join(rel, d)) for d in dirs
              if d.count('.') == 2 and d.replace('.', '').isdigit()]
    if rel != '.':
      dirs[:] = []
  return sorted(found)


def difference(stored: dict, now: dict) -> str | None:
  """What differs between two fingerprints of the same flags, in words; None if the data
  is the same. The path is not compared: data moved or copied elsewhere is the same data
  when its content hash (files up to HASH_LIMIT), or its size and modification time
  (larger files), or its listing (directories) is unchanged."""
  if stored == now:
    return None
  if stored.get('source') != now.get('source'):
    return f'the data source was {stored.get("source")}, now {now.get("source")}'
  if now.get('missing') or stored.get('missing'):
    return (f'{now.get("path")!r} is missing now' if now.get('missing') else
            f'{stored.get("path")!r} was missing when it was recorded')
  if stored.get('source') == 'population' and stored.get('sha256') != now.get('sha256'):
    return 'its metadata.json changed (a population written with other flags)'
  if 'sha256' in stored and 'sha256' in now and stored.get('source') != 'population':
    if stored['sha256'] == now['sha256']:
      return None
    return (f'its content changed (SHA-256 {stored["sha256"][:12]}.. -> {now["sha256"][:12]}.., '
            f'size {stored.get("size")} -> {now.get("size")} bytes)')
  for key, what in (('name', 'TFDS name'), ('split', 'split'), ('versions', 'versions'),
                    ('size', 'size in bytes'), ('entries', 'number of entries'),
                    ('mtime_ns', 'modification time (ns)'),
                    ('listing_sha256', 'listing (names, sizes or times of its files)')):
    if stored.get(key) != now.get(key):
      return f'its {what} changed ({_short(stored.get(key))} -> {_short(now.get(key))})'
  return None


def _short(value) -> str:
  text = str(value)
  return text if len(text) <= 24 else text[:12] + '..'
