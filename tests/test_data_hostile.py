"""Hostile input files: each is read as written, or refused with one line naming it.

Table-driven: every case builds a small file or folder under tmp_path. A
refused one raises one DataError line naming the file, with no Python warning
first (warnings are errors here); a few go end to end through the CLI (exit 2,
one stderr line, the workdir untouched).
"""
import errno
import io
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile

from absl import flags
import numpy as np
import pytest
from PIL import Image

from fedar_jax import flagfiles
from fedar_jax.config import RunConfig, validate
from fedar_jax.data.errors import DataError
from fedar_jax.data.load import load_pool
from fedar_jax.data.pattern_faces import write_fer2013_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(num_clients=2, test_per_class=1, partition='iid')


def _folder(tmp_path, classes=('a', 'b'), n=2):
  """An image_folder root with n 4x4 8-bit PNGs per class; returns its config."""
  for k in classes:
    (tmp_path / 'img' / k).mkdir(parents=True)
    for i in range(n):
      Image.new('L', (4, 4), 40 * i).save(tmp_path / 'img' / k / f'{i}.png')
  return RunConfig(dataset='image_folder', data_dir=str(tmp_path / 'img'), image_size=4, **SMALL)


def _csv(tmp_path, header, rows, encoding='utf-8'):
  """A latent CSV of header + rows (strings); returns its config."""
  path = tmp_path / 'd.csv'
  path.write_text('\n'.join([header, *rows]) + '\n', encoding=encoding)
  return RunConfig(dataset='latent_csv', data_path=str(path), **SMALL)


def _latent_rows(n=8, d=2):
  return [','.join([str(i), *(f'{0.1 * (i + j):g}' for j in range(d)), str(i % 2)])
          for i in range(n)]


def _npz(tmp_path, **arrays):
  np.savez(tmp_path / 'd.npz', **arrays)
  return RunConfig(dataset='latent_csv', data_path=str(tmp_path / 'd.npz'), **SMALL)


def _npy_claiming(array, shape) -> bytes:
  """`array` saved as .npy with its header rewritten to claim `shape` (same header length)."""
  buf = io.BytesIO()
  np.save(buf, array)
  data = buf.getvalue()
  length = int.from_bytes(data[8:10], 'little')
  header = data[10:10 + length].decode('latin1').replace(repr(array.shape), repr(shape))
  return data[:10] + header.rstrip().ljust(length - 1).encode('latin1') + b'\n' + data[
      10 + length:]


def _fer(tmp_path, edit=None):
  """A FER2013 CSV of 2 classes x 3 rows; edit(lines) may change its lines."""
  path = tmp_path / 'f.csv'
  write_fer2013_csv(str(path), seed=0, per_class=[3, 3], emotions=(3, 4))
  lines = path.read_text().splitlines()
  path.write_text('\n'.join(edit(lines) if edit else lines) + '\n')
  return RunConfig(dataset='fer2013', data_path=str(path), image_size=8, **SMALL)


def image_class_symlink_loop(tmp_path, monkeypatch):
  cfg = _folder(tmp_path)
  os.symlink('c', tmp_path / 'img' / 'c')
  return cfg


def image_file_symlink_loop(tmp_path, monkeypatch):
  cfg = _folder(tmp_path)
  os.symlink('x.png', tmp_path / 'img' / 'b' / 'x.png')
  return cfg


def image_unreadable_class_folder(tmp_path, monkeypatch):
  """Permissions do not bind root, so reading the folder is made to fail as chmod 000 would."""
  cfg = _folder(tmp_path)
  listdir, scandir, bad = os.listdir, os.scandir, str(tmp_path / 'img' / 'b')

  def refuse(real):
    def call(path='.'):
      if os.fspath(path) == bad:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), bad)
      return real(path)
    return call
  monkeypatch.setattr(os, 'listdir', refuse(listdir))
  monkeypatch.setattr(os, 'scandir', refuse(scandir))
  return cfg


def fer_fractional_pixel(tmp_path, monkeypatch):
  def edit(lines):
    emotion, pixels, usage = lines[2].split(',')
    lines[2] = ','.join([emotion, '12.7 ' + pixels.split(' ', 1)[1], usage])
    return lines
  return _fer(tmp_path, edit)


def fer_two_pixels_columns(tmp_path, monkeypatch):
  return _fer(tmp_path, lambda lines: [lines[0] + ',pixels'] + [
      line + ',' + line.split(',')[1] for line in lines[1:]])


def csv_two_class_columns(tmp_path, monkeypatch):
  return _csv(tmp_path, ',0,1,class,class', [r + f',{int(r[-1]) ^ 1}' for r in _latent_rows()])


def csv_superscript_header(tmp_path, monkeypatch):
  return _csv(tmp_path, ',0,1,\u00b2,class', [r.replace(',', ',0,', 1) for r in _latent_rows()])


def csv_value_over_float32(tmp_path, monkeypatch):
  rows = _latent_rows()
  rows[2] = '2,1e39,0.5,0'
  return _csv(tmp_path, ',0,1,class', rows)


def npz_no_feature_values(tmp_path, monkeypatch):
  return _npz(tmp_path, x=np.zeros((800, 0)), y=np.arange(800) % 2)


def npz_complex(tmp_path, monkeypatch):
  return _npz(tmp_path, x=np.ones((8, 2)) * (1 + 2j), y=np.arange(8) % 2)


def npz_value_over_float32(tmp_path, monkeypatch):
  x = np.zeros((8, 2))
  x[5, 1] = -1e39
  return _npz(tmp_path, x=x, y=np.arange(8) % 2)


def npz_header_claims_32gb(tmp_path, monkeypatch):
  with zipfile.ZipFile(tmp_path / 'd.npz', 'w') as z:
    z.writestr('x.npy', _npy_claiming(np.zeros((8, 2), np.float32), (1 << 30, 8)))
    z.writestr('y.npy', _npy_claiming(np.arange(8) % 2, (8,)))
  return RunConfig(dataset='latent_csv', data_path=str(tmp_path / 'd.npz'), **SMALL)


REFUSED = [
    (image_class_symlink_loop, 'img/c: cannot read (Too many levels of symbolic links)'),
    (image_file_symlink_loop, 'img/b/x.png: cannot read (Too many levels of symbolic links)'),
    (image_unreadable_class_folder, 'img/b: cannot read the class folder (Permission denied)'),
    (fer_fractional_pixel, 'f.csv: row 2: pixel value 12.7 is not an integer'),
    (fer_two_pixels_columns, "f.csv: column 'pixels' appears twice in the header"),
    (csv_two_class_columns, "d.csv: column 'class' appears twice in the header"),
    (csv_superscript_header, "d.csv: column '\u00b2' looks like a number but only ASCII"),
    (csv_value_over_float32, 'd.csv: feature value 1e+39 in data row 3 is outside the float32'),
    (npz_no_feature_values, 'd.npz: x has shape (800, 0): no feature values'),
    (npz_complex, 'd.npz: x is complex128; features must be real'),
    (npz_value_over_float32, 'd.npz: feature value -1e+39 in data row 6 is outside the float32'),
    (npz_header_claims_32gb, "d.npz: array 'x' claims shape (1073741824, 8) float32 (32.0 GiB)"),
]


@pytest.mark.parametrize('build,pattern', REFUSED, ids=[b.__name__ for b, _ in REFUSED])
def test_refused_with_one_line_naming_the_file(tmp_path, monkeypatch, build, pattern):
  cfg = validate(build(tmp_path, monkeypatch))
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    with pytest.raises(DataError) as e:
      load_pool(cfg)
  assert pattern in str(e.value) and '\n' not in str(e.value), str(e.value)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
  for k, value in (('a', 30000), ('b', 65535)):
    (tmp_path / 'img' / k).mkdir(parents=True)
    Image.fromarray(np.full((4, 4), value, np.uint16)).save(tmp_path / 'img' / k / '0.png')
  assert Image.open(tmp_path / 'img' / 'a' / '0.png').mode == 'I;16'
  for color, size in (('grayscale', 4), ('rgb', 2)):
    cfg = RunConfig(dataset='image_folder', data_dir=str(tmp_path / 'img'), image_size=size,
                    color=color, model='cnn', **SMALL)
    pool, _ = load_pool(cfg)
    np.testing.assert_allclose(pool.x[0], 30000 / 65535, atol=1e-6)
    np.testing.assert_allclose(pool.x[1], 1.0)


def test_byte_order_mark_is_stripped_from_csv_and_fer(tmp_path):
  rows = [f'{i % 2},{0.1 * i:g},{0.2 * i:g}' for i in range(8)]
  pool, ids = load_pool(_csv(tmp_path, 'class,0,1', rows, encoding='utf-8-sig'))
  assert (tmp_path / 'd.csv').read_bytes().startswith(b'\xef\xbb\xbfclass')
  np.testing.assert_array_equal(pool.y, np.arange(8) % 2)
  np.testing.assert_allclose(pool.x[:, 1], 0.2 * np.arange(8), rtol=1e-6)
  cfg = _fer(tmp_path)
  text = (tmp_path / 'f.csv').read_text()
  (tmp_path / 'f.csv').write_text(text, encoding='utf-8-sig')
  assert load_pool(cfg)[0].class_names == ('Happy', 'Sad')


def _flag_values():
  values = flags.FlagValues()
  flags.DEFINE_integer('seed', 0, '', flag_values=values)
  flags.DEFINE_string('name', '', '', flag_values=values)
  return values


def _flagfile_case(tmp_path, case) -> str:
  """Builds a bad flagfile; returns the path given to --flagfile."""
  path = tmp_path / 'f.flags'
  if case == 'device':
    return '/dev/zero'
  if case == 'fifo':
    os.mkfifo(path)
  elif case == 'directory':
    path.mkdir()
  elif case == 'binary':
    path.write_bytes(b'--seed=1\n\x89PNG\r\n\x1a\n\x00\x00')
  elif case == 'latin1':
    path.write_bytes('--name=caf\u00e9\n'.encode('latin1'))
  elif case == 'over_1_mib':
    path.write_text('# padding\n' * (flagfiles.MAX_BYTES // 10 + 1))
  elif case == 'nested_binary':
    (tmp_path / 'inner.flags').write_bytes(b'\x00\x01\x02')
    path.write_text(f'--seed=1\n--flagfile={tmp_path / "inner.flags"}\n')
  elif case == 'nested_loop':
    (tmp_path / 'inner.flags').write_text(f'--flagfile={path}\n')
    path.write_text(f'--flagfile={tmp_path / "inner.flags"}\n')
  elif case == 'nested_too_much':  # 20 levels, each naming the next twice: 2^20 copies.
    for level in range(20):
      inner = tmp_path / f'{level + 1}.flags'
      (tmp_path / f'{level}.flags').write_text(f'--flagfile={inner}\n' * 2)
    (tmp_path / '20.flags').write_text('--seed=1\n')
    return str(tmp_path / '0.flags')
  return str(path)


@pytest.mark.parametrize('case,pattern', [
    ('device', '--flagfile=/dev/zero: not a regular file (a character device)'),
    ('fifo', 'f.flags: not a regular file (a FIFO)'),
    ('directory', 'f.flags: not a regular file (a directory)'),
    ('missing', 'f.flags: cannot read (No such file or directory)'),
    ('binary', 'f.flags: not UTF-8 text (byte 0x89 at offset 9)'),
    ('latin1', 'f.flags: not UTF-8 text (byte 0xe9 at offset 10)'),
    ('over_1_mib', 'f.flags: 1048580 bytes; a flagfile holds at most 1048576'),
    ('nested_binary', 'inner.flags: not text (NUL byte at offset 0)'),
    ('nested_loop', 'f.flags: names itself through --flagfile (a loop)'),
    ('nested_too_much', '0.flags: the flagfiles read add up to more than 1048576 bytes'),
])
def test_bad_flagfile_is_one_line_naming_it(tmp_path, case, pattern):
  path = _flagfile_case(tmp_path, case)
  values = _flag_values()
  with pytest.raises(flags.Error) as e:
    flagfiles.parse(values, ['prog', f'--flagfile={path}'])
  assert pattern in str(e.value) and '\n' not in str(e.value), str(e.value)
  assert not values['seed'].present


def test_flagfile_byte_order_mark_is_stripped_and_nothing_left_behind(tmp_path, monkeypatch):
  (tmp_path / 'tmp').mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))
  (tmp_path / 'inner.flags').write_text('--name=caf\u00e9\n', encoding='utf-8-sig')
  (tmp_path / 'outer.flags').write_text(f'--seed=3\n--flagfile={tmp_path / "inner.flags"}\n',
                                        encoding='utf-8-sig')
  plain = tmp_path / 'plain.flags'
  plain.write_text('--seed=4\n')
  values, given = _flag_values(), []

  def parse_and_record(argv):  # What absl is handed, and the copies present meanwhile.
    given.append((argv, os.listdir(tmp_path / 'tmp')))
    return values(argv)
  outer = f'--flagfile={tmp_path / "outer.flags"}'
  assert flagfiles.parse(parse_and_record, ['prog', outer]) == ['prog']
  assert (values.seed, values.name) == (3, 'caf\u00e9')
  [(argv, copies)] = given
  assert argv[1].startswith(f'--flagfile={tmp_path / "tmp"}') and len(copies) == 1
  values = _flag_values()
  flagfiles.parse(values, ['prog', '--flagfile', str(plain), '--name=x'])
  assert (values.seed, values.name) == (4, 'x')
  assert not os.listdir(tmp_path / 'tmp')


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'fedar_jax.main', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_cli_exit_2_with_one_line_and_no_warning(tmp_path):
  """Through `python -m fedar_jax.main`: a binary flagfile, a value over float32, complex x."""
  (tmp_path / 'f.flags').write_bytes(b'\xff\xfe-\x00-\x00')
  csv_path = validate(csv_value_over_float32(tmp_path, None)).data_path
  npz_path = validate(npz_complex(tmp_path, None)).data_path
  for args, pattern in [
      ([f'--flagfile={tmp_path / "f.flags"}'], 'f.flags: not UTF-8 text (byte 0xff at offset 0)'),
      (['--dataset=latent_csv', f'--data_path={csv_path}'], 'd.csv: feature value 1e+39'),
      (['--dataset=latent_csv', f'--data_path={npz_path}'], 'd.npz: x is complex128'),
  ]:
    proc = _cli(f'--workdir={tmp_path / "w"}', *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and pattern in lines[0], (
        proc.stderr)
    assert not (tmp_path / 'w').exists()
