"""Label encoding and class selection/relabelling shared by the data sources."""
from typing import Sequence

import numpy as np

from fedar_jax.data.errors import DataError
from fedar_jax.data.pool import Pool


def encode_labels(values: Sequence[str], where: str,
                  names_by_value: dict[str, str] | None = None):
  """Maps raw label cells to classes 0..K-1.

  Integer labels keep their numeric order and become the classes' `label_ids`;
  string labels are sorted by name and numbered 0..K-1.

  Args:
    values: T label cells as strings.
    where: file or flag named in errors.
    names_by_value: optional display name for each raw value (e.g. the
      Emotion name of each `class` id).

  Returns:
    (y int32[T], class_names tuple[str], label_ids tuple[int]).
  """
  values = [v.strip() for v in values]
  if any(v == '' for v in values):
    raise DataError(where, f'empty label in row {values.index("") + 1}')
  try:
    ints = [int(v) for v in values]
  except ValueError:
    ints = None
  if ints is not None:
    uniq = sorted(set(ints))
    if uniq and uniq[0] < 0:
      raise DataError(where, f'negative class label {uniq[0]}')
    index = {v: i for i, v in enumerate(uniq)}
    names = tuple((names_by_value or {}).get(str(v), str(v)) for v in uniq)
    return np.array([index[v] for v in ints], np.int32), names, tuple(uniq)
  uniq = sorted(set(values))
  index = {v: i for i, v in enumerate(uniq)}
  return np.array([index[v] for v in values], np.int32), tuple(uniq), tuple(range(len(uniq)))


def select_classes(pool: Pool, label_ids: Sequence[int], classes: Sequence[str]) -> Pool:
  """Keeps the rows of `classes` and relabels them 0..k-1 in the order given.

  Args:
    pool: the source's rows; label_ids: the source's label value of each class.
    classes: class names (case-insensitive) or integer label values, e.g.
      ('Happy', 'Sad') or ('3', '4'); empty keeps every class.

  Raises:
    DataError naming --classes when a class is absent or repeated.
  """
  if not classes:
    return pool
  by_name = {n.lower(): k for k, n in enumerate(pool.class_names)}
  by_id = {str(v): k for k, v in enumerate(label_ids)}
  chosen = []
  for c in classes:
    k = by_name.get(c.strip().lower(), by_id.get(c.strip()))
    if k is None:
      raise DataError('--classes', f'class {c!r} is not in the data; found: '
                      f'{", ".join(f"{n} ({i})" for n, i in zip(pool.class_names, label_ids))}')
    if k in chosen:
      raise DataError('--classes', f'class {c!r} is named twice')
    chosen.append(k)
  if len(chosen) < 2:
    raise DataError('--classes', f'need at least 2 classes, got {len(chosen)}')
  relabel = np.full(len(pool.class_names), -1, np.int32)
  relabel[chosen] = np.arange(len(chosen))
  new_y = relabel[pool.y]
  keep = new_y >= 0
  return Pool(pool.x[keep], new_y[keep], tuple(pool.class_names[k] for k in chosen),
              None if pool.groups is None else pool.groups[keep])
