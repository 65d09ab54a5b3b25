"""The FER2013 CSV: `emotion,pixels,Usage`, 48x48 grayscale faces as space-separated pixels.

Labels 0..6 are Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral. Usage is
Training, PublicTest or PrivateTest.
"""
import csv

import numpy as np

from fedar_jax.data import images
from fedar_jax.data.csv_reading import open_csv, unique_columns
from fedar_jax.data.errors import DataError
from fedar_jax.data.input_file import require_file
from fedar_jax.data.pool import Pool

EMOTIONS = ('Angry', 'Disgust', 'Fear', 'Happy', 'Sad', 'Surprise', 'Neutral')
SIDE = 48
USAGES = ('Training', 'PublicTest', 'PrivateTest')


def load(path: str, image_size: int = SIDE, color: str = 'grayscale',
         usage: tuple[str, ...] = ()):
  """Reads a FER2013 CSV.

  Args:
    path: the CSV file.
    image_size: output side (images are resized from 48x48 when different).
    color: 'grayscale' (1 channel) or 'rgb' (the gray value in 3 channels).
    usage: keep only rows whose Usage is listed (empty keeps all).

  Returns:
    (Pool with x float32[T, image_size, image_size, ch] in [0, 1],
    label_ids (0..6)).

  Raises:
    DataError naming the file (and row): a missing or repeated column, a
    label outside 0..6, a pixel count other than 48x48, a pixel value that is
    not an integer in 0..255.
  """
  labels, pixels = _read(path, usage, with_pixels=True)
  pool, present = _pool(labels, np.zeros((len(labels), 0), np.float32))
  return pool._replace(x=images.from_uint8(np.stack(pixels), image_size, color)), present


def load_labels(path: str, usage: tuple[str, ...] = ()):
  """`load`'s Pool and label ids with zero-width rows (x float32[T, 0]): the labels only,
  no pixel parsed (what a plan needs to partition the rows)."""
  labels, _ = _read(path, usage, with_pixels=False)
  return _pool(labels, np.zeros((len(labels), 0), np.float32))


def _pool(labels: list[int], x: np.ndarray):
  """(Pool of the present classes, relabelled 0..K-1, with rows x; their label ids)."""
  present = sorted(set(labels))
  index = np.full(len(EMOTIONS), -1, np.int32)
  index[present] = np.arange(len(present))
  return Pool(x, index[np.array(labels)], tuple(EMOTIONS[k] for k in present)), tuple(present)


def _read(path: str, usage: tuple[str, ...], with_pixels: bool):
  """(labels, uint8[48, 48] pixel arrays or None) of the rows whose Usage is in `usage`."""
  if not path:
    raise DataError('--data_path', 'is required for --dataset=fer2013')
  require_file(path)
  try:
    with open_csv(path) as f:
      reader = csv.DictReader(f)
      header = reader.fieldnames or []
      unique_columns(header, path)
      missing = [c for c in ('emotion', 'pixels') if c not in header]
      if missing:
        raise DataError(path, f'not a FER2013 CSV: missing column(s) {", ".join(missing)}; '
                        f'found: {", ".join(header)}')
      if usage and 'Usage' not in header:
        raise DataError(path, 'no Usage column to select --fer2013_usage from')
      labels, pixels = [], []
      for i, row in enumerate(reader):
        if None in row or None in row.values():  # DictReader: extra or missing cells.
          cells = sum(k is not None and v is not None for k, v in row.items())
          raise DataError(path, f'row {i + 1}: {cells + len(row.get(None, []))} cells, the '
                          f'header has {len(header)}')
        if usage and row['Usage'].strip() not in usage:
          continue
        try:
          label = int(row['emotion'])
        except (TypeError, ValueError):
          raise DataError(path, f'row {i + 1}: emotion {row["emotion"]!r} is not an integer')
        if not 0 <= label < len(EMOTIONS):
          raise DataError(path, f'row {i + 1}: emotion {label} is outside 0..6')
        labels.append(label)
        if with_pixels:
          pixels.append(_pixels(row['pixels'], path, i))
  except OSError as e:
    raise DataError(path, f'cannot read file ({e.strerror or e})')
  except (UnicodeDecodeError, csv.Error) as e:
    raise DataError(path, f'not a readable CSV file ({e})')
  if not labels:
    raise DataError(path, 'no data rows' + (f' with Usage in {",".join(usage)}' if usage else ''))
  return labels, pixels if with_pixels else None


def _pixels(cell: str, path: str, i: int) -> np.ndarray:
  """Row i's pixels cell as uint8[48, 48]."""
  try:
    values = np.array((cell or '').split(), np.float64)
  except ValueError:
    raise DataError(path, f'row {i + 1}: non-numeric pixel value')
  if values.size != SIDE * SIDE:
    raise DataError(path, f'row {i + 1}: {values.size} pixels, expected '
                    f'{SIDE * SIDE} (48x48)')
  if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 255:
    raise DataError(path, f'row {i + 1}: pixel values must be finite and in 0..255')
  fractional = values[values != np.floor(values)]
  if fractional.size:
    raise DataError(path, f'row {i + 1}: pixel value {fractional[0]:g} is not an integer')
  return values.astype(np.uint8).reshape(SIDE, SIDE)
