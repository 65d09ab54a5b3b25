"""MethodParams: the traced numeric parameters of the methods, one leaf per registered
parameter (registry.params(), in declaration order)."""
import jax
import jax.numpy as jnp

from fedar_jax.methods import registry


def _cast(param: registry.Param, value) -> jax.Array:
  return (jnp.int32 if param.dtype == registry.INT32 else jnp.float32)(value)


@jax.tree_util.register_pytree_node_class
class MethodParams:
  """Traced parameters of the methods: `p.trim_fraction`, ... (float32 scalars, int32 for
  int32 parameters; [S] leaves in a sweep). Names are the registered parameters, which
  are also the RunConfig fields/flags of the built-in ones. A pytree with one leaf per
  parameter; `_fields`, `_replace` and `_asdict` as a NamedTuple's."""
  __slots__ = ('_values',)

  def __init__(self, values: dict):
    object.__setattr__(self, '_values', dict(values))

  @classmethod
  def create(cls, **values) -> 'MethodParams':
    """Every registered parameter: its default, or its value in `values`, cast to its dtype."""
    params = registry.params()
    unknown = set(values) - {p.name for p in params}
    if unknown:
      raise ValueError(f'unknown method parameters {sorted(unknown)}')
    return cls({p.name: _cast(p, values.get(p.name, p.default)) for p in params})

  def __getattr__(self, name):
    if name == '_values':  # Not set yet (copy, unpickling): no recursion.
      raise AttributeError(name)
    try:
      return self._values[name]
    except KeyError:
      raise AttributeError(name) from None

  def __setattr__(self, name, value):
    raise AttributeError('MethodParams is immutable; use _replace')

  @property
  def _fields(self) -> tuple[str, ...]:
    return tuple(self._values)

  def _asdict(self) -> dict:
    return dict(self._values)

  def _replace(self, **values) -> 'MethodParams':
    unknown = set(values) - set(self._values)
    if unknown:
      raise ValueError(f'unknown method parameters {sorted(unknown)}')
    return MethodParams({**self._values, **values})

  def __repr__(self):
    return f'MethodParams({", ".join(f"{k}={v!r}" for k, v in self._values.items())})'

  def tree_flatten(self):
    return tuple(self._values.values()), tuple(self._values)

  @classmethod
  def tree_unflatten(cls, names, leaves):
    return cls(dict(zip(names, leaves)))


def params_of(cfg, **overrides) -> MethodParams:
  """The traced MethodParams of a RunConfig: each registered parameter from its field of
  `cfg`, else `overrides`, else its default (a parameter registered after RunConfig was
  built has no field)."""
  values = {p.name: getattr(cfg, p.name) for p in registry.params() if hasattr(cfg, p.name)}
  for name, value in overrides.items():
    problem = registry.param(name).bound.problem(value)
    if problem:
      raise ValueError(f'{name}: {problem}')
  return MethodParams.create(**{**values, **overrides})
