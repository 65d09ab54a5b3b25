"""A directory with one sub-folder per class (FER2013-images, CK+, RAF-DB-basic, JAFFE layouts).

Class names are the sub-folder names in sorted order; every regular file in a
class folder must be a readable image.
"""
import os

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
  if not root:
    raise DataError('--data_dir', 'is required for --dataset=image_folder')
  if not os.path.isdir(root):
    raise DataError(root, 'no such directory (--data_dir)')
  classes = sorted(d for d in os.listdir(root)
                   if os.path.isdir(os.path.join(root, d)) and not d.startswith('.'))
  if len(classes) < 2:
    raise DataError(root, f'expected one sub-folder per class, found {len(classes)}')
  xs, ys = [], []
  for k, name in enumerate(classes):
    folder = os.path.join(root, name)
    files = sorted(f for f in os.listdir(folder)
                   if not f.startswith('.') and os.path.isfile(os.path.join(folder, f)))
    if not files:
      raise DataError(folder, 'empty class folder (no image files)')
    for fname in files:
      path = os.path.join(folder, fname)
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
  return Pool(np.stack(xs), np.array(ys, np.int32), tuple(classes)), tuple(range(len(classes)))
