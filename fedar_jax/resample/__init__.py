"""Resamplers as pure, jit/vmap-able functions with fixed output capacity.

Every resampler maps `(key, x[N, D], y[N], mask[N]) -> (x[M, D], y[M], mask[M])`
with a static capacity M. `make_resampler` builds one by its flag name
(imbalanced-learn class names in snake case).
"""
import functools
from typing import Callable, NamedTuple

from fedar_jax.resample import oversample
from fedar_jax.resample.gate import class_counts, fedar_gate, imbalance_ratio  # noqa: F401


class Resampler(NamedTuple):
  """A resampler bound to static shapes.

  name: flag value. fn: (key, x[N,D], y[N], mask[N]) -> (x[M,D], y[M], mask[M]).
  capacity: M, the number of output rows.
  """
  name: str
  fn: Callable
  capacity: int


def _identity(key, x, y, mask):
  del key
  return x, y, mask


def _none(num_classes, capacity, max_class_count, options):
  del num_classes, max_class_count, options
  return Resampler('none', _identity, capacity)


def _oversampler(fn, name, num_classes, capacity, max_class_count, options):
  # Deficits sum to at most (K - 1) * (majority - 1) <= (K - 1) * max_class_count.
  slots = max(num_classes - 1, 0) * max_class_count
  return Resampler(name, functools.partial(fn, num_classes=num_classes, num_slots=slots, **options),
                   capacity + slots)


# name -> (builder, allowed options)
_REGISTRY = {
    'none': (_none, ()),
    'random_over': (functools.partial(_oversampler, oversample.random_over, 'random_over'), ()),
    'smote': (functools.partial(_oversampler, oversample.smote, 'smote'), ('k_neighbors',)),
}

RESAMPLER_NAMES = tuple(_REGISTRY)


def resampler_options(name: str) -> tuple[str, ...]:
  """The option names `make_resampler` accepts for `name`."""
  return _REGISTRY[name][1]


def make_resampler(name: str, *, num_classes: int, capacity: int,
                   max_class_count: int | None = None, **options) -> Resampler:
  """Builds the resampler called `name`.

  Args:
    name: one of RESAMPLER_NAMES.
    num_classes: K.
    capacity: N, input rows per client.
    max_class_count: static upper bound on any client's largest class count
      (sets the synthetic capacity of oversamplers); defaults to N.
    **options: sampler options (e.g. k_neighbors=5); options the sampler does
      not take are ignored.

  Raises:
    ValueError: unknown name.
  """
  if name not in _REGISTRY:
    raise ValueError(f'unknown resampler {name!r}; allowed: {", ".join(RESAMPLER_NAMES)}')
  builder, allowed = _REGISTRY[name]
  options = {k: v for k, v in options.items() if k in allowed}
  return builder(num_classes, capacity, max_class_count or capacity, options)
