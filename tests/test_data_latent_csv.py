import re

import numpy as np
import pytest

from fedar_jax.data import latent_csv
from fedar_jax.data.errors import DataError

NAMES = {0: 'Happy', 1: 'Sad', 2: 'Angry'}


def write_csv(path, x, y, extra_header='', extra=None, index=True):
  cols = ([''] if index else []) + [str(i) for i in range(x.shape[1])] + ['Emotion', 'class']
  lines = [','.join(cols) + extra_header]
  for i, (row, label) in enumerate(zip(x, y)):
    cells = ([str(i)] if index else []) + [repr(float(v)) for v in row] + [NAMES[label], str(label)]
    lines.append(','.join(cells) + (f',{extra[i]}' if extra is not None else ''))
  path.write_text('\n'.join(lines) + '\n')


def sample(n=12, d=5, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, d)).astype(np.float32), rng.permutation(np.arange(n) % 3)


def test_authors_layout_round_trips(tmp_path):
  x, y = sample()
  write_csv(tmp_path / 'f.csv', x, y)
  pool, ids = latent_csv.load(str(tmp_path / 'f.csv'))
  np.testing.assert_array_equal(pool.x, x)
  np.testing.assert_array_equal(pool.y, y)
  assert pool.class_names == ('Happy', 'Sad', 'Angry') and ids == (0, 1, 2)
  assert pool.groups is None


def test_emotion_column_as_label_sorts_names(tmp_path):
  x, y = sample()
  write_csv(tmp_path / 'f.csv', x, y)
  pool, _ = latent_csv.load(str(tmp_path / 'f.csv'), label_column='Emotion')
  assert pool.class_names == ('Angry', 'Happy', 'Sad')
  np.testing.assert_array_equal(np.array(pool.class_names)[pool.y],
                                np.array([NAMES[v] for v in y]))


def test_client_column_gives_groups(tmp_path):
  x, y = sample()
  subjects = [f's{i % 4}' for i in range(len(y))]
  write_csv(tmp_path / 'f.csv', x, y, extra_header=',subject', extra=subjects)
  pool, _ = latent_csv.load(str(tmp_path / 'f.csv'), client_column='subject')
  np.testing.assert_array_equal(pool.groups, np.arange(len(y)) % 4)


def test_npz(tmp_path):
  x, y = sample()
  np.savez(tmp_path / 'f.npz', x=x, y=y + 3)
  pool, ids = latent_csv.load(str(tmp_path / 'f.npz'))
  np.testing.assert_array_equal(pool.x, x)
  np.testing.assert_array_equal(pool.y, y)
  assert ids == (3, 4, 5) and pool.class_names == ('3', '4', '5')


@pytest.mark.parametrize('mutate,pattern', [
    (lambda t: t.replace(',0,1,2,3,4,', ',a,b,c,d,e,', 1), 'expected feature columns named 0..D-1'),
    (lambda t: t.replace(',class', ',label', 1), "no column 'class'"),
    (lambda t: re.sub(r'\n1,[^,]*,', '\n1,oops,', t, count=1), "non-numeric feature value 'oops'"),
    (lambda t: re.sub(r'\n2,[^,]*,', '\n2,nan,', t, count=1), 'non-finite .* in data row 3'),
    (lambda t: re.sub(r'\n3,[^,]*,', '\n3,inf,', t, count=1), 'non-finite .* in data row 4'),
    (lambda t: t + '99,1.0\n', 'has 2 cells'),
])
def test_bad_csv_names_file_and_problem(tmp_path, mutate, pattern):
  x, y = sample()
  path = tmp_path / 'f.csv'
  write_csv(path, x, y)
  path.write_text(mutate(path.read_text()))
  with pytest.raises(DataError, match=pattern) as e:
    latent_csv.load(str(path))
  assert str(path) in str(e.value)


def test_missing_file_and_npz_without_y(tmp_path):
  with pytest.raises(DataError, match='no such file'):
    latent_csv.load(str(tmp_path / 'absent.csv'))
  np.savez(tmp_path / 'f.npz', x=np.zeros((3, 2)))
  with pytest.raises(DataError, match=r'missing array\(s\) y'):
    latent_csv.load(str(tmp_path / 'f.npz'))
