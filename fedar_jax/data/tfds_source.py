"""Any TensorFlow Datasets dataset already prepared under --data_dir (`tfds.data_source`, no TensorFlow).

The dataset needs an `image` (or `features`) feature and a `label`
ClassLabel; nothing is downloaded.
"""
import difflib
import os

import numpy as np

from fedar_jax.data import images
from fedar_jax.data.errors import DataError
from fedar_jax.data.pool import Pool


def load(name: str, data_dir: str = '', split: str = 'train', image_size: int = 48,
         color: str = 'grayscale'):
  """Reads every record of `split` of the prepared TFDS dataset `name`.

  Returns:
    (Pool with x float32[T, image_size, image_size, ch] in [0, 1] for image
    datasets or float32[T, D] for feature datasets, label_ids).
  """
  import tensorflow_datasets as tfds  # Slow import; only for this source.
  where = f'--dataset=tfds:{name}'
  _check_data_dir(data_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
    source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataError(where, f'no TFDS dataset of that name; closest: {closest(name, str(e))}')
  except Exception as e:  # TFDS raises many types for "not found / not prepared".
    # The whole message on one line (TFDS lists its "Possible root causes" on further lines).
    msg = ' '.join(line.strip().lstrip('*').strip() for line in str(e).splitlines()
                   if line.strip()) or type(e).__name__
    raise DataError(where, f'not available prepared under --data_dir={data_dir!r} '
                    f'(split {split!r}; tfds.data_source reads data prepared in the '
                    f'array_record or parquet file format, e.g. download_and_prepare('
                    f'file_format="array_record")): {msg}')
  features = builder.info.features
  if 'label' not in features:
    raise DataError(where, f'no "label" feature; found: {", ".join(features.keys())}')
  key = next((k for k in ('image', 'features') if k in features), None)
  if key is None:
    raise DataError(where, f'no "image" or "features" feature; found: '
                    f'{", ".join(features.keys())}')
  n = len(source)
  if n == 0:
    raise DataError(where, f'split {split!r} is empty')
  records = [source[i] for i in range(n)]
  y = np.array([int(r['label']) for r in records], np.int32)
  values = [np.asarray(r[key]) for r in records]
  if key == 'image':
    from PIL import Image
    def decode(v):
      v = v.astype(np.uint8)
      return Image.fromarray(v[..., 0] if v.shape[-1] == 1 else v)
    x = np.stack([images.to_array(decode(v), image_size, color) for v in values])
  else:
    x = np.stack(values).astype(np.float32).reshape(n, -1)
  names = getattr(features['label'], 'names', None) or [str(k) for k in range(int(y.max()) + 1)]
  present = sorted(set(y.tolist()))
  index = np.full(len(names), -1, np.int32)
  index[present] = np.arange(len(present))
  return Pool(x, index[y], tuple(str(names[k]) for k in present)), tuple(present)


def _check_data_dir(data_dir: str) -> None:
  """DataError unless `data_dir` is empty (TFDS's default) or an existing directory (TFDS
  would read a missing one as data prepared in a format data_source cannot read)."""
  if data_dir and not os.path.isdir(data_dir):
    what = 'is not a directory' if os.path.exists(data_dir) else 'no such directory'
    raise DataError(data_dir, f'{what} (--data_dir)')


def closest(name: str, message: str, n: int = 5) -> str:
  """The `n` dataset names closest to `name` among those a TFDS DatasetNotFoundError
  `message` lists (its '- name' lines), comma-separated."""
  names = [line.strip()[2:] for line in message.splitlines() if line.strip().startswith('- ')]
  return ', '.join(difflib.get_close_matches(name.split('/')[0].split(':')[0], names, n,
                                             cutoff=0)) or 'none listed'
