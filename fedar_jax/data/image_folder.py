"""A directory with one sub-folder per class (FER2013-images, CK+, RAF-DB-basic, JAFFE layouts).

Class names are the sub-folder names in sorted order; every regular file in a
class folder must be a readable image. Names starting with '.' are skipped;
any other entry that cannot be read (a symlink loop, a dangling link, a folder
without permission) is refused by name, never skipped.
"""
import os
import stat

import numpy as np
from PIL import Image, UnidentifiedImageError

from fedar_jax.data import images
from fedar_jax.data.errors import DataError
from fedar_jax.data.pool import Pool

MAX_PIXELS = 1 << 26  # 8192x8192: far above face-image sizes, far below a decompression bomb.


def load(root: str, image_size: int = 48, color: str = 'grayscale'):
  """Decodes and resizes every image under `root/<class>/`.

  Returns:
    (Pool with x float32[T, image_size, image_size, ch] in [0, 1],
    label_ids (0..K-1, the sorted folder order)).
  """
  classes = class_files(root)
  xs, ys = [], []
  for k, (_, files) in enumerate(classes):
    for path in files:
      try:
        with Image.open(path) as img:  # Reads the header only; pixels are decoded below.
          if img.width * img.height > MAX_PIXELS:
            raise DataError(path, f'image header claims {img.width}x{img.height} pixels, more '
                            f'than the {MAX_PIXELS} this loader decodes')
          xs.append(images.to_array(img, image_size, color))
      except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, DataError):
          raise
        detail = (str(e).splitlines() or [''])[0]
        raise DataError(path, f'unreadable image ({type(e).__name__}: {detail})')
      ys.append(k)
  names = tuple(name for name, _ in classes)
  return Pool(np.stack(xs), np.array(ys, np.int32), names), tuple(range(len(names)))


def load_labels(root: str):
  """`load`'s Pool and label ids with zero-width rows (x float32[T, 0]): one label per
  image file, no image opened (what a plan needs to partition the rows)."""
  classes = class_files(root)
  y = np.concatenate([np.full(len(files), k, np.int32) for k, (_, files) in enumerate(classes)])
  return (Pool(np.zeros((len(y), 0), np.float32), y, tuple(name for name, _ in classes)),
          tuple(range(len(classes))))


def class_files(root: str) -> list[tuple[str, list[str]]]:
  """[(class name, its image files' paths)] of `root`, classes and files by sorted name.

  Raises DataError: no --data_dir, fewer than 2 class folders, an empty class folder, an
  entry that cannot be read.
  """
  if not root:
    raise DataError('--data_dir', 'is required for --dataset=image_folder')
  if not os.path.isdir(root):
    raise DataError(root, 'no such directory (--data_dir)')
  classes = [name for name, mode in _entries(root, 'data directory') if stat.S_ISDIR(mode)]
  if len(classes) < 2:
    raise DataError(root, f'expected one sub-folder per class, found {len(classes)}')
  out = []
  for name in classes:
    folder = os.path.join(root, name)
    files = [os.path.join(folder, f) for f, mode in _entries(folder, 'class folder')
             if stat.S_ISREG(mode)]
    if not files:
      raise DataError(folder, 'empty class folder (no image files)')
    out.append((name, files))
  return out


def _entries(folder: str, what: str) -> list[tuple[str, int]]:
  """(name, st_mode) of `folder`'s entries not starting with '.', by name, symlinks followed.

  Raises:
    DataError naming the folder when it cannot be listed, or the entry that
    cannot be stat'ed (a symlink loop, a dangling link).
  """
  try:
    names = sorted(n for n in os.listdir(folder) if not n.startswith('.'))
  except OSError as e:
    raise DataError(folder, f'cannot read the {what} ({e.strerror or e})')
  entries = []
  for name in names:
    path = os.path.join(folder, name)
    try:
      entries.append((name, os.stat(path).st_mode))
    except OSError as e:
      raise DataError(path, f'cannot read ({e.strerror or e})')
  return entries
