import numpy as np
import pytest
from PIL import Image

from fedar_jax.data import image_folder
from fedar_jax.data.errors import DataError


def make_folder(root, per_class=(2, 3), size=10):
  rng = np.random.default_rng(0)
  images = {}
  for name, n in zip(('sad', 'happy'), per_class):
    (root / name).mkdir(parents=True)
    for i in range(n):
      arr = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
      Image.fromarray(arr, 'L').save(root / name / f'{i}.png')
      images[(name, i)] = arr
  return images


def test_classes_sorted_and_pixels_kept(tmp_path):
  images = make_folder(tmp_path / 'd')
  pool, ids = image_folder.load(str(tmp_path / 'd'), image_size=10)
  assert pool.class_names == ('happy', 'sad') and ids == (0, 1)
  np.testing.assert_array_equal(pool.y, [0, 0, 0, 1, 1])
  assert pool.x.shape == (5, 10, 10, 1)
  np.testing.assert_allclose(pool.x[3, ..., 0] * 255, images[('sad', 0)], atol=1e-3)


def test_resize_and_rgb(tmp_path):
  make_folder(tmp_path / 'd')
  pool, _ = image_folder.load(str(tmp_path / 'd'), image_size=6, color='rgb')
  assert pool.x.shape == (5, 6, 6, 3) and 0 <= pool.x.min() and pool.x.max() <= 1


def test_empty_class_folder(tmp_path):
  make_folder(tmp_path / 'd')
  (tmp_path / 'd' / 'angry').mkdir()
  with pytest.raises(DataError, match='empty class folder') as e:
    image_folder.load(str(tmp_path / 'd'))
  assert 'angry' in str(e.value)


def test_unreadable_image(tmp_path):
  make_folder(tmp_path / 'd')
  (tmp_path / 'd' / 'sad' / 'broken.png').write_bytes(b'not an image')
  with pytest.raises(DataError, match='unreadable image') as e:
    image_folder.load(str(tmp_path / 'd'))
  assert 'broken.png' in str(e.value)


def test_missing_directory(tmp_path):
  with pytest.raises(DataError, match='no such directory'):
    image_folder.load(str(tmp_path / 'absent'))
