"""Resamplers as pure, jit/vmap-able functions with fixed output capacity.

Every resampler is one pure function `(key, x[N, D], y[N], mask[N]) ->
(x[M, D], y[M], mask[M], fell_back)` with a static capacity M; `fell_back` is
True where imbalanced-learn would have raised and we went on (fewer
neighbours, fewer or no synthetic rows). `make_resampler` builds one by its flag
name (imbalanced-learn class names in snake case).

Capacities (N input rows, K classes, B = largest class count over clients):
  over-samplers and combined: M = N + (K - 1) * B, real rows first;
    adasyn adds (K - 1) * B // 2 + K slots for rounding, kmeans_smote (K - 1) * n_clusters
    for its per-cluster ceilings;
  under-samplers and cleaning rules: M = N, rows in place, removed rows masked.
"""
import functools
from typing import Callable, NamedTuple

import jax.numpy as jnp

from fedar_jax.resample import cleaning
from fedar_jax.resample import combine
from fedar_jax.resample import oversample
from fedar_jax.resample import smote_variants
from fedar_jax.resample import undersample
from fedar_jax.resample.gate import class_counts, fedar_gate, imbalance_ratio  # noqa: F401


class Resampler(NamedTuple):
  """A resampler bound to static shapes: one pure function plus static facts.

  name: flag value.
  resample: (key, x[N, ...], y[N], mask[N]) -> (x[M, ...], y[M], mask[M], fell_back),
    on rows of any shape (images x[N, H, W, ch] are resampled as vectors of H*W*ch
    and given back in their shape); fell_back a bool scalar, True where imbalanced-learn
    would have raised and the resampler went on (fewer neighbours, fewer or no synthetic
    rows).
  capacity: M, the number of output rows (static).
  resamples: False for `none` (the identity, M = N): a client never counts as
    resampled however the gate decides.
  bound: the static keyword arguments the sampler is bound to, as sorted
    (name, value) pairs (num_classes, num_slots, options given; an option left
    out takes the sampler's imbalanced-learn default).
  """
  name: str
  resample: Callable
  capacity: int
  resamples: bool = True
  bound: tuple = ()


def _identity(key, x, y, mask):
  del key
  return x, y, mask, jnp.asarray(False)


def _bind(name, core, capacity, **kwargs):
  """A Resampler from a core on vectors x[N, D] returning (x, y, mask, fallback)."""
  def resample_fn(key, x, y, mask):
    xs, ys, ms, flag = core(key, x.reshape(x.shape[0], -1), y, mask, **kwargs)
    return xs.reshape(xs.shape[:1] + x.shape[1:]), ys, ms, jnp.asarray(flag)

  return Resampler(name, resample_fn, capacity, bound=tuple(sorted(kwargs.items())))


def _none(name, num_classes, capacity, max_class_count, options):
  del name, num_classes, max_class_count, options
  return Resampler('none', _identity, capacity, resamples=False)


def _over(core, extra, name, num_classes, capacity, max_class_count, options, **fixed):
  # Deficits sum to at most (K - 1) * (majority - 1) <= (K - 1) * max_class_count.
  slots = max(num_classes - 1, 0) * max_class_count + extra(num_classes, max_class_count)
  return _bind(name, core, capacity + slots, num_classes=num_classes, num_slots=slots,
               **fixed, **options)


def _under(core, name, num_classes, capacity, max_class_count, options, **fixed):
  del max_class_count
  return _bind(name, core, capacity, num_classes=num_classes, **fixed, **options)


def _no_extra(num_classes, max_class_count):
  del num_classes, max_class_count
  return 0


def _over_builder(core, extra=_no_extra, **fixed):
  return functools.partial(_over, core, extra, **fixed)


def _under_builder(core, **fixed):
  return functools.partial(_under, core, **fixed)


# name -> (builder, allowed options). Option defaults are imbalanced-learn 0.14's,
# set in the functions' signatures.
_REGISTRY = {
    'none': (_none, ()),
    'random_over': (_over_builder(oversample.random_over), ()),
    'smote': (_over_builder(oversample.smote), ('k_neighbors',)),
    'borderline_smote1': (_over_builder(smote_variants.borderline_smote, kind=1),
                          ('k_neighbors', 'm_neighbors')),
    'borderline_smote2': (_over_builder(smote_variants.borderline_smote, kind=2),
                          ('k_neighbors', 'm_neighbors')),
    'adasyn': (_over_builder(smote_variants.adasyn, lambda k, b: max(k - 1, 0) * b // 2 + k), ('n_neighbors',)),
    'kmeans_smote': (_over_builder(smote_variants.kmeans_smote, lambda k, b: 8 * max(k - 1, 0)),
                     ('k_neighbors',)),
    'svm_smote': (_over_builder(smote_variants.svm_smote), ('k_neighbors', 'm_neighbors')),
    'smote_tomek': (_over_builder(combine.smote_tomek), ('k_neighbors',)),
    'smote_enn': (_over_builder(combine.smote_enn), ('k_neighbors', 'n_neighbors')),
    'random_under': (_under_builder(undersample.random_under), ()),
    'nearmiss1': (_under_builder(undersample.nearmiss, version=1), ('n_neighbors',)),
    'nearmiss2': (_under_builder(undersample.nearmiss, version=2), ('n_neighbors',)),
    'nearmiss3': (_under_builder(undersample.nearmiss, version=3), ('n_neighbors',)),
    'tomek': (_under_builder(cleaning.tomek), ()),
    'enn': (_under_builder(cleaning.enn), ('n_neighbors',)),
    'renn': (_under_builder(cleaning.renn), ('n_neighbors',)),
    'allknn': (_under_builder(cleaning.allknn), ('n_neighbors',)),
    'cnn': (_under_builder(cleaning.cnn), ('n_neighbors',)),
    'oss': (_under_builder(cleaning.oss), ('n_neighbors',)),
    'ncr': (_under_builder(cleaning.ncr), ('n_neighbors',)),
    'iht': (_under_builder(cleaning.iht), ()),
    'cluster_centroids': (_under_builder(undersample.cluster_centroids), ()),
}

RESAMPLER_NAMES = tuple(_REGISTRY)

# Every option any sampler takes (RunConfig has one field per option).
OPTION_NAMES = ('k_neighbors', 'm_neighbors', 'n_neighbors')


def make_resampler(name: str, *, num_classes: int, capacity: int,
                   max_class_count: int | None = None, **options) -> Resampler:
  """Builds the resampler called `name`.

  Args:
    name: one of RESAMPLER_NAMES.
    num_classes: K.
    capacity: N, input rows per client.
    max_class_count: static upper bound on any client's largest class count
      (sets the synthetic capacity of oversamplers); defaults to N.
    **options: sampler options (k_neighbors, m_neighbors, n_neighbors); options
      the sampler does not take, and options set to None or 0, are ignored (the
      sampler's imbalanced-learn default applies).

  Raises:
    ValueError: unknown name.
  """
  if name not in _REGISTRY:
    raise ValueError(f'unknown resampler {name!r}; allowed: {", ".join(RESAMPLER_NAMES)}')
  builder, allowed = _REGISTRY[name]
  options = {k: v for k, v in options.items() if k in allowed and v}
  return builder(name, num_classes, capacity, max_class_count or capacity, options)
