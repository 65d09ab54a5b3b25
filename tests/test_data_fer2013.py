import numpy as np
import pytest

from fedar_jax.data import fer2013
from fedar_jax.data.errors import DataError


def write_fer(path, labels, usages=None, seed=0, pixels=2304):
  rng = np.random.default_rng(seed)
  imgs = rng.integers(0, 256, size=(len(labels), pixels))
  usages = usages or ['Training'] * len(labels)
  lines = ['emotion,pixels,Usage'] + [f'{k},{" ".join(map(str, p))},{u}'
                                       for k, p, u in zip(labels, imgs, usages)]
  path.write_text('\n'.join(lines) + '\n')
  return imgs


def test_pixels_labels_and_names(tmp_path):
  imgs = write_fer(tmp_path / 'f.csv', [3, 4, 3, 6])
  pool, ids = fer2013.load(str(tmp_path / 'f.csv'))
  assert pool.x.shape == (4, 48, 48, 1) and pool.x.dtype == np.float32
  np.testing.assert_allclose(pool.x[..., 0].reshape(4, -1) * 255, imgs, atol=1e-3)
  assert pool.class_names == ('Happy', 'Sad', 'Neutral') and ids == (3, 4, 6)
  np.testing.assert_array_equal(pool.y, [0, 1, 0, 2])


def test_usage_filter_resize_and_rgb(tmp_path):
  write_fer(tmp_path / 'f.csv', [0, 1, 2], ['Training', 'PublicTest', 'PrivateTest'])
  pool, ids = fer2013.load(str(tmp_path / 'f.csv'), image_size=16, color='rgb',
                           usage=('Training', 'PrivateTest'))
  assert pool.x.shape == (2, 16, 16, 3) and ids == (0, 2)
  np.testing.assert_array_equal(pool.x[..., 0], pool.x[..., 2])


@pytest.mark.parametrize('kwargs,pattern', [
    ({'pixels': 2000}, '2000 pixels, expected 2304'),
    ({'labels': [9]}, 'emotion 9 is outside 0..6'),
])
def test_bad_rows(tmp_path, kwargs, pattern):
  write_fer(tmp_path / 'f.csv', kwargs.pop('labels', [1, 2]), **kwargs)
  with pytest.raises(DataError, match=pattern):
    fer2013.load(str(tmp_path / 'f.csv'))


def test_wrong_columns_and_missing_file(tmp_path):
  (tmp_path / 'f.csv').write_text('label,image\n1,0 0\n')
  with pytest.raises(DataError, match='not a FER2013 CSV: missing column'):
    fer2013.load(str(tmp_path / 'f.csv'))
  with pytest.raises(DataError, match='no such file'):
    fer2013.load(str(tmp_path / 'nope.csv'))
