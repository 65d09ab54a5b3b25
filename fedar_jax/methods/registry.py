"""The method registry: every method and its traced parameters, declared once (no JAX).

A *method* is one choice of a code setting (`--aggregator=krum`, `--loss=focal`,
`--model=cnn`, ...): `Method(kind, name, impl, params)`. Its *parameters* are
traced numbers (`Param`: name, default, range, dtype, help, sweep flag) that
the compiled round reads from `MethodParams`, so changing them never recompiles.
A parameter may be shared by several methods (`server_learning_rate` by every
server optimizer), or belong to a kind as a whole (`prox_mu`: local training
with any client optimizer); it is declared with the first method that uses it.

`impl` is the implementation: a callable, or a 'module:attribute' string
resolved on first use (`resolve`), so declaring the built-in methods imports no
JAX and the flag validation (config.py) reads this table without it.

From this table come: the method names each flag allows, the `MethodParams`
leaves (one per parameter, in declaration order), the range checks of the
parameters (config.py, in float32/int32 as the round sees them), the traced
entries of `sweep_axes.SWEEP_FLAGS`, and the methods table of docs/defences.md.
"""
import contextlib
import dataclasses
import importlib
import math
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
}


class Param(NamedTuple):
  """A traced numeric parameter of one or more methods.

  name: the RunConfig field / flag and the MethodParams leaf; default: its value;
  low, high: its range, each bound closed (`low_closed`, `high_closed`) or open;
  dtype: FLOAT32 or INT32, the dtype the round computes with (the range is
  checked on that value); help: the flag's help text; sweep: the sweep list's
  flag name ('' for none) and sweep_help its help text.
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

  def requirement(self) -> str:
    """The allowed range as messages write it: 'in [0, 1)', '> 0', '>= 0' (int32)."""
    if self.high == INF and not self.low_closed:
      return f'> {self.low:g}'
    if self.high == INF and self.dtype == INT32:
      return f'>= {self.low:g}'
    return (f'in {"[" if self.low_closed else "("}{self.low:g}, {self.high:g}'
            f'{"]" if self.high_closed else ")"}')

  def contains(self, value: float) -> bool:
    """Whether `value` is inside the range (compare the value the round uses)."""
    above = value >= self.low if self.low_closed else value > self.low
    below = value <= self.high if self.high_closed else value < self.high
    return above and below


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


@dataclasses.dataclass
class _Table:
  methods: dict = dataclasses.field(default_factory=dict)   # (kind, name) -> Method
  params: dict = dataclasses.field(default_factory=dict)    # name -> Param
  owners: dict = dataclasses.field(default_factory=dict)    # param name -> [(kind, name)]
  kind_params: dict = dataclasses.field(default_factory=dict)  # param name -> kind


_TABLE = _Table()


def _add_param(p: Param) -> None:
  known = _TABLE.params.get(p.name)
  if known is not None and known != p:
    raise ValueError(f'parameter {p.name!r} is declared twice, differently')
  _TABLE.params[p.name] = p


def register(method: Method) -> Method:
  """Adds `method` (and its parameters) to the registry; returns it."""
  if method.kind not in KINDS:
    raise ValueError(f'unknown method kind {method.kind!r}; kinds: {", ".join(KINDS)}')
  key = (method.kind, method.name)
  if key in _TABLE.methods:
    raise ValueError(f'{method.kind} {method.name!r} is registered already')
  for p in method.params:
    _add_param(p)
  _TABLE.methods[key] = method
  for p in method.params:
    _TABLE.owners.setdefault(p.name, []).append(key)
  return method


def register_kind_param(kind: str, param: Param) -> Param:
  """Adds a parameter that every method of `kind` uses (prox_mu: local training)."""
  _add_param(param)
  _TABLE.kind_params[param.name] = kind
  return param


@contextlib.contextmanager
def scoped():
  """Registrations inside the block are undone after it (tests)."""
  saved = _Table(dict(_TABLE.methods), dict(_TABLE.params),
                 {k: list(v) for k, v in _TABLE.owners.items()}, dict(_TABLE.kind_params))
  try:
    yield
  finally:
    _TABLE.methods, _TABLE.params = saved.methods, saved.params
    _TABLE.owners, _TABLE.kind_params = saved.owners, saved.kind_params


def names(kind: str) -> tuple[str, ...]:
  """The registered method names of `kind`, in registration order."""
  return tuple(n for k, n in _TABLE.methods if k == kind)


def get(kind: str, name: str) -> Method:
  try:
    return _TABLE.methods[(kind, name)]
  except KeyError:
    raise ValueError(f'unknown {kind} {name!r}; allowed: {", ".join(names(kind))}') from None


def params() -> tuple[Param, ...]:
  """Every registered parameter, in declaration order (the MethodParams leaves)."""
  return tuple(_TABLE.params.values())


def param(name: str) -> Param:
  return _TABLE.params[name]


def users(param_name: str) -> tuple[str, ...]:
  """'kind=name' of the methods that read `param_name` ('kind' for a kind's parameter)."""
  if param_name in _TABLE.kind_params:
    return (_TABLE.kind_params[param_name],)
  return tuple(f'{k}={n}' for k, n in _TABLE.owners.get(param_name, ()))


def resolve(kind: str, name: str) -> Callable:
  """The implementation of method `name` of `kind` (importing its module if named by string)."""
  impl = get(kind, name).impl
  if isinstance(impl, str):
    module, _, attr = impl.partition(':')
    impl = getattr(importlib.import_module(module), attr)
  if impl is None:
    raise ValueError(f'{kind} {name!r} has no implementation to call')
  return impl
