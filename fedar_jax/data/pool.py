"""A labelled pool of samples, as a source loads it before partitioning."""
from typing import NamedTuple

import numpy as np


class Pool(NamedTuple):
  """All rows of one data source.

  x: float32[T, ...] features (float32[T, D] vectors or float32[T, H, W, ch]
  images scaled to [0, 1]); y: int32[T] labels in [0, K); class_names: K
  strings; groups: int64[T] natural client ids (e.g. subject ids) or None.
  """
  x: np.ndarray
  y: np.ndarray
  class_names: tuple[str, ...]
  groups: np.ndarray | None = None
