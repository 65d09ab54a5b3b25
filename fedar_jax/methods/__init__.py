"""Method choices of a run (static: they change the compiled code) and their numeric
parameters (traced: changing them never recompiles), from the registry (no JAX here).

`Methods` names the server optimizer, aggregator, client loss and client
optimizer and the privacy mechanism (--dp); it lives in `RoundSpec`. `MethodParams` (methods/params.py, loaded
on first use) carries every registered numeric parameter as a float32/int32
scalar; it lives in `HParams`, so a sweep can stack it on the sweep axis like
the threshold. The built-in methods are declared in methods/builtin.py.
"""
from typing import NamedTuple

from fedar_jax.methods import registry

# The built-in names (registry.names(kind) also lists methods registered later).
SERVER_OPTIMIZERS = registry.names('server_optimizer')
AGGREGATORS = registry.names('aggregator')
LOSSES = registry.names('loss')
CLIENT_OPTIMIZERS = registry.names('client_optimizer')


class Methods(NamedTuple):
  """Static method names (registry kinds); the defaults are plain FedAR. privacy: the
  --dp mechanism (none, fixed, adaptive)."""
  server_optimizer: str = 'fedavg'
  aggregator: str = 'mean'
  loss: str = 'ce'
  client_optimizer: str = 'adam'
  privacy: str = 'none'


def methods_of(cfg) -> Methods:
  """The static Methods of a RunConfig."""
  return Methods(**{kind: getattr(cfg, registry.KINDS[kind]) for kind in Methods._fields})


def __getattr__(name):  # MethodParams and params_of need JAX: imported on first use.
  if name in ('MethodParams', 'params_of'):
    from fedar_jax.methods import params
    return getattr(params, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
