"""The float32 matmul/conv precision policy of training and evaluation.

`--matmul_precision` picks the precision of every matmul and convolution that
does not name its own (model layers, FedAvg, metrics): `default` leaves the
backend's choice (TF32-class passes on recent NVIDIA GPUs, bfloat16 passes on
TPUs; full float32 on CPUs), `high` and `highest` are JAX's
`jax.default_matmul_precision` levels (`highest`: full float32 everywhere).
Neighbour search always runs at HIGHEST (`resample.neighbors`), whatever this
says. The policy is applied at trace time, so it must wrap the function that
is jitted. The module imports JAX only when a wrapped function is traced, so
the flag validation can name PRECISIONS without loading JAX.
"""
import functools
from typing import Callable

PRECISIONS = ('default', 'high', 'highest')


def with_matmul_precision(fn: Callable, precision: str) -> Callable:
  """`fn` traced under `precision` (one of PRECISIONS; `default` returns `fn`)."""
  if precision not in PRECISIONS:
    raise ValueError(f'unknown matmul precision {precision!r}; allowed: {", ".join(PRECISIONS)}')
  if precision == 'default':
    return fn

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    import jax
    with jax.default_matmul_precision(precision):
      return fn(*args, **kwargs)
  return wrapped
