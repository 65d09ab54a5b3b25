"""What a method declares: its kind, name, implementation and traced parameters (no JAX).

The types the registry (registry.py) holds and the built-ins (builtin.py) are
written in; both import them from here, so neither imports the other's caller.
"""
import math
import struct
from typing import Callable, NamedTuple

FLOAT32, INT32 = 'float32', 'int32'
INF = math.inf

# The code settings whose values are methods: kind -> RunConfig field (the flag).
KINDS = {
    'server_optimizer': 'server_optimizer',
    'aggregator': 'aggregator',
    'client_optimizer': 'client_optimizer',
    'loss': 'loss',
    'attack': 'attack',
    'model': 'model',
    'dataset': 'dataset',
    'privacy': 'dp',
}


def dataset_source(dataset: str) -> str:
  """The registered data source of a --dataset value: 'tfds:NAME' for any 'tfds:<name>'."""
  return 'tfds:NAME' if dataset.startswith('tfds:') and len(dataset) > 5 else dataset


class Bound(NamedTuple):
  """The range of a numeric flag: low, high, each closed or open, checked on the value as
  the compiled code holds it (dtype FLOAT32 or INT32)."""
  name: str
  low: float = -INF
  high: float = INF
  low_closed: bool = True
  high_closed: bool = False
  dtype: str = FLOAT32

  def requirement(self) -> str:
    """The range as messages write it: '>= 1', '> 0', 'in [0, 0.5)', 'in [0, 1]'."""
    if self.high == INF:
      return f'{">=" if self.low_closed else ">"} {self.low:g}'
    return (f'in {"[" if self.low_closed else "("}{self.low:g}, {self.high:g}'
            f'{"]" if self.high_closed else ")"}')

  def contains(self, value: float) -> bool:
    above = value >= self.low if self.low_closed else value > self.low
    below = value <= self.high if self.high_closed else value < self.high
    return above and below

  def problem(self, value) -> str | None:
    """None if `value` is in range both as given and as the float32/int32 the round uses,
    else what is wrong ('must be in [0, 0.5), got 0.49999999 (0.5 in float32)')."""
    if not self.contains(value):
      return f'must be {self.requirement()}, got {value:g}'
    if self.dtype == FLOAT32:
      stored = float(struct.unpack('f', struct.pack('f', value))[0])
      if not self.contains(stored):
        return (f'must be {self.requirement()}, got {value!r} ({stored:g} in float32, the '
                f'value the round uses)')
    return None


class Param(NamedTuple):
  """A traced numeric parameter of one or more methods.

  name: the RunConfig field / flag and the MethodParams leaf; default: its value;
  help: the flag's help text; low, high: its range, each bound closed
  (`low_closed`, `high_closed`) or open; dtype: FLOAT32 or INT32, the dtype the
  round computes with (the range is checked on that value); sweep: the sweep
  list's flag name ('' for none) and sweep_help its help text.
  """
  name: str
  default: float
  help: str
  low: float = -INF
  high: float = INF
  low_closed: bool = True
  high_closed: bool = False
  dtype: str = FLOAT32
  sweep: str = ''
  sweep_help: str = ''

  @property
  def bound(self) -> Bound:
    return Bound(self.name, self.low, self.high, self.low_closed, self.high_closed, self.dtype)


class Method(NamedTuple):
  """One method: kind (a KINDS key), name (the flag value), impl (callable or
  'module:attribute'), params (the Params it reads), help and reference (one line each,
  for docs/defences.md)."""
  kind: str
  name: str
  impl: Callable | str | None = None
  params: tuple[Param, ...] = ()
  help: str = ''
  reference: str = ''


class KindParam(NamedTuple):
  """A parameter every method of `kind` uses (prox_mu: local training with any client
  optimizer), with help and reference (one line each, for docs/defences.md)."""
  kind: str
  param: Param
  help: str = ''
  reference: str = ''
