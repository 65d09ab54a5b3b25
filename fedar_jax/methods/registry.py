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
JAX and the flag validation (config.py) reads this table without it. The
built-ins are data (methods/builtin.py, `DECLARED`), read on the registry's
first use; `register` adds a method (a test: inside `scoped()`).

From this table come: the method names each flag allows, the `MethodParams`
leaves (one per parameter, in declaration order), the range checks of the
parameters (`Bound`, checked by config.py in float32/int32 as the round sees
them), the RunConfig fields of the built-in parameters, the traced
entries of `sweep_axes.SWEEP_FLAGS`, and the methods table of docs/defences.md.
"""
import contextlib
import dataclasses
import importlib
from typing import Callable

from fedar_jax.methods import builtin
from fedar_jax.methods.declarations import (  # noqa: F401 (the registry's vocabulary)
    FLOAT32, INF, INT32, KINDS, Bound, KindParam, Method, Param, dataset_source)


@dataclasses.dataclass
class _Table:
  methods: dict = dataclasses.field(default_factory=dict)   # (kind, name) -> Method
  params: dict = dataclasses.field(default_factory=dict)    # name -> Param
  owners: dict = dataclasses.field(default_factory=dict)    # param name -> [(kind, name)]
  kind_params: dict = dataclasses.field(default_factory=dict)  # param name -> KindParam


_TABLE = None


def _table() -> _Table:
  """The registry, holding the built-ins (methods/builtin.py) from its first use on."""
  global _TABLE
  if _TABLE is None:
    _TABLE = _Table()
    for entry in builtin.DECLARED:
      if isinstance(entry, KindParam):
        register_kind_param(entry)
      else:
        register(entry)
  return _TABLE


def _add_param(p: Param) -> None:
  known = _table().params.get(p.name)
  if known is not None and known != p:
    raise ValueError(f'parameter {p.name!r} is declared twice, differently')
  _table().params[p.name] = p


def register(method: Method) -> Method:
  """Adds `method` (and its parameters) to the registry; returns it."""
  if method.kind not in KINDS:
    raise ValueError(f'unknown method kind {method.kind!r}; kinds: {", ".join(KINDS)}')
  key = (method.kind, method.name)
  if key in _table().methods:
    raise ValueError(f'{method.kind} {method.name!r} is registered already')
  for p in method.params:
    _add_param(p)
  _table().methods[key] = method
  for p in method.params:
    _table().owners.setdefault(p.name, []).append(key)
  return method


def register_kind_param(entry: KindParam) -> Param:
  """Adds a parameter that every method of `entry.kind` uses; returns it."""
  if entry.kind not in KINDS:
    raise ValueError(f'unknown method kind {entry.kind!r}; kinds: {", ".join(KINDS)}')
  _add_param(entry.param)
  _table().kind_params[entry.param.name] = entry
  return entry.param


def kind_params() -> tuple[KindParam, ...]:
  return tuple(_table().kind_params.values())


@contextlib.contextmanager
def scoped():
  """Registrations inside the block are undone after it (tests)."""
  table = _table()
  saved = _Table(dict(table.methods), dict(table.params),
                 {k: list(v) for k, v in table.owners.items()}, dict(table.kind_params))
  try:
    yield
  finally:
    table.methods, table.params = saved.methods, saved.params
    table.owners, table.kind_params = saved.owners, saved.kind_params


def names(kind: str) -> tuple[str, ...]:
  """The registered method names of `kind`, in registration order."""
  return tuple(n for k, n in _table().methods if k == kind)


def get(kind: str, name: str) -> Method:
  try:
    return _table().methods[(kind, name)]
  except KeyError:
    raise ValueError(f'unknown {kind} {name!r}; allowed: {", ".join(names(kind))}') from None


def params(kind: str = '') -> tuple[Param, ...]:
  """The registered parameters (of the methods of `kind`, if given), in declaration order:
  the MethodParams leaves."""
  return tuple(p for p in _table().params.values() if not kind or kind_of(p.name) == kind)


def kind_of(param_name: str) -> str:
  """The kind whose methods use the parameter (the kind that declared it first)."""
  table = _table()
  if param_name in table.kind_params:
    return table.kind_params[param_name].kind
  return table.owners[param_name][0][0]


def param(name: str) -> Param:
  return _table().params[name]


def resolve(kind: str, name: str) -> Callable:
  """The implementation of method `name` of `kind` (importing its module if named by string)."""
  impl = get(kind, name).impl
  if isinstance(impl, str):
    module, _, attr = impl.partition(':')
    impl = getattr(importlib.import_module(module), attr)
  if impl is None:
    raise ValueError(f'{kind} {name!r} has no implementation to call')
  return impl
