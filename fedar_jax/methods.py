"""Method choices of a run (static: they change the compiled code) and their numeric
parameters (traced: changing them never recompiles).

`Methods` names the server optimizer, aggregator, client loss and client
optimizer; it lives in `RoundSpec`. `MethodParams` carries every numeric
parameter of those methods as float32/int32 scalars; it lives in `HParams`, so a
sweep can stack it on the sweep axis like the threshold.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

SERVER_OPTIMIZERS = ('fedavg', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad')
AGGREGATORS = ('mean', 'median', 'trimmed_mean', 'krum', 'multi_krum', 'geometric_median',
               'norm_clip')
LOSSES = ('ce', 'focal', 'class_balanced', 'balanced_softmax', 'logit_adjusted', 'fedrs', 'fedlc')
CLIENT_OPTIMIZERS = ('adam', 'sgd', 'momentum')


class Methods(NamedTuple):
  """Static method names (see the tuples above); the defaults are plain FedAR."""
  server_optimizer: str = 'fedavg'
  aggregator: str = 'mean'
  loss: str = 'ce'
  client_optimizer: str = 'adam'


class MethodParams(NamedTuple):
  """Traced numeric parameters of the methods (float32 scalars, byzantine_clients int32;
  [S] leaves in a sweep). Field names are the RunConfig fields/flags."""
  server_learning_rate: jax.Array = 1.0
  server_momentum: jax.Array = 0.9
  server_beta1: jax.Array = 0.9
  server_beta2: jax.Array = 0.99
  server_tau: jax.Array = 1e-3
  trim_fraction: jax.Array = 0.1
  byzantine_clients: jax.Array = 0
  clip_norm: jax.Array = 1.0
  prox_mu: jax.Array = 0.0
  focal_gamma: jax.Array = 2.0
  cb_beta: jax.Array = 0.999
  la_tau: jax.Array = 1.0
  fedrs_alpha: jax.Array = 0.5
  fedlc_tau: jax.Array = 1.0
  attack_scale: jax.Array = 10.0

  @classmethod
  def create(cls, **values) -> 'MethodParams':
    """Defaults overridden by `values`, as float32 scalars (byzantine_clients int32)."""
    p = cls()._replace(**values)
    return cls(*(jnp.int32(v) if name == 'byzantine_clients' else jnp.float32(v)
                 for name, v in zip(cls._fields, p)))


def methods_of(cfg) -> Methods:
  """The static Methods of a RunConfig."""
  return Methods(**{name: getattr(cfg, name) for name in Methods._fields})


def params_of(cfg) -> MethodParams:
  """The traced MethodParams of a RunConfig."""
  return MethodParams.create(**{name: getattr(cfg, name) for name in MethodParams._fields
                                if hasattr(cfg, name)})
