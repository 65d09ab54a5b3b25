"""The sweep flags as a table, and how their values become groups of sweep points (no JAX).

Every sweep flag lists values of one RunConfig field and has a *kind*:
  traced  a number the round takes as a traced HParams value: every value runs
          in the same compiled program, as a slice of the sweep axis S;
  data    changes only the client data: every value's data set is built once and
          stacked on the sweep axis (x[U, C, N, ...]), one program for all;
  code    changes the program (resampler, model, aggregator kind): one group,
          one program, per value.
A sweep is the product of all lists. The code lists' product gives the groups;
inside a group the points are data-major (data flags in table order), then the
traced flags in table order, so point s uses data set s // (S / U).
Adding a sweep flag is one entry in SWEEP_FLAGS (a traced entry's field must
also be in `fedar_round.HParams` and set by `train.build`); the traced lists of
the methods' parameters come from the method registry (a `Param` with a
`sweep` name, methods/builtin.py), in declaration order. `--defences` names
rows of `defences.DEFENCES`: each is a code value that also sets the flags of
its entry on every point of its group.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING, NamedTuple

from fedar_jax import defences
from fedar_jax.methods import registry

if TYPE_CHECKING:  # Annotations only: the report reads this table without loading JAX.
  from fedar_jax.config import RunConfig

TRACED, DATA, CODE = 'traced', 'data', 'code'


class SweepFlag(NamedTuple):
  """One sweep flag: the RunConfig field it lists, the element type, its kind, its help."""
  field: str
  type: type
  kind: str
  help: str


# Sweep flag -> entry. The order is the order of the setting columns of
# sweep.csv (existing columns first; new entries go at the end).
SWEEP_FLAGS = {
    'imbalance_ratios': SweepFlag('imbalance_ratio', float, DATA, 'Imbalance ratios to sweep '
                                  '(stacked data); default --imbalance_ratio.'),
    'resamplers': SweepFlag('resampler', str, CODE, 'Resamplers to sweep (a program each); '
                            'default --resampler.'),
    'thresholds': SweepFlag('threshold', float, TRACED, 'FedAR thresholds to sweep; default '
                            '--threshold.'),
    'seeds': SweepFlag('seed', int, TRACED, 'Seeds to sweep (initialisation and client '
                       'randomness; the data comes from --data_seeds); default --seed.'),
    'learning_rates': SweepFlag('learning_rate', float, TRACED, 'Learning rates to sweep; '
                                'default --learning_rate.'),
    'data_seeds': SweepFlag('data_seed', int, DATA, 'Data seeds to sweep (stacked data, each '
                            '>= 0); default --data_seed, or --seed when that is -1.'),
    'attacker_fractions': SweepFlag('attacker_fraction', float, DATA, 'Attacker fractions to '
                                    'sweep (stacked data); default --attacker_fraction.'),
    # --- Defences (docs/defences.md) ---
    'server_optimizers': SweepFlag('server_optimizer', str, CODE, 'Server optimizers to sweep '
                                   '(a program each); default --server_optimizer.'),
    'aggregators': SweepFlag('aggregator', str, CODE, 'Aggregators to sweep (a program each); '
                             'default --aggregator.'),
    'losses': SweepFlag('loss', str, CODE, 'Client losses to sweep (a program each); default '
                        '--loss.'),
    'client_optimizers': SweepFlag('client_optimizer', str, CODE, 'Client optimizers to sweep '
                                   '(a program each); default --client_optimizer.'),
    # The methods' traced parameters (the method registry), in declaration order.
    **{p.sweep: SweepFlag(p.name, int if p.dtype == registry.INT32 else float, TRACED,
                          p.sweep_help)
       for p in registry.params() if p.sweep},
    'attacks': SweepFlag('attack', str, DATA, 'Attacks to sweep (stacked data; skew and '
                         'label_flip, or scale alone); default --attack.'),
    'defences': SweepFlag('defence', str, CODE, 'Named defences to sweep (a program each; '
                          f'{", ".join(defences.NAMES)}: docs/defences.md); default --defence.'),
}

# sweep.csv columns that name a point, ahead of the metrics columns.
SETTING_COLUMNS = tuple(f.field for f in SWEEP_FLAGS.values())


def flags_of(kind: str) -> tuple[str, ...]:
  return tuple(name for name, f in SWEEP_FLAGS.items() if f.kind == kind)


def format_value(value) -> str:
  """A setting as written to sweep.csv (floats in %g)."""
  return f'{value:g}' if isinstance(value, float) else str(value)


def base_value(base: RunConfig, name: str):
  """The single value an omitted sweep flag stands for."""
  if name == 'data_seeds':
    return base.effective_data_seed
  return getattr(base, SWEEP_FLAGS[name].field)


@dataclasses.dataclass(frozen=True)
class SweepAxes:
  """The values swept: `lists[flag]` for every flag of SWEEP_FLAGS (never empty).

  The lists are also attributes (`axes.thresholds`, ...).
  """
  lists: dict

  @classmethod
  def of(cls, base: RunConfig, **lists) -> 'SweepAxes':
    """Axes from the given lists; an empty or missing list is the base config's one value."""
    unknown = set(lists) - set(SWEEP_FLAGS)
    if unknown:
      raise ValueError(f'unknown sweep lists {sorted(unknown)}')
    return cls({name: tuple(lists.get(name) or (base_value(base, name),))
                for name in SWEEP_FLAGS})

  def __getattr__(self, name):
    if name in SWEEP_FLAGS:
      return self.lists[name]
    raise AttributeError(name)

  def count(self, kind: str) -> int:
    """Number of combinations of the flags of `kind`."""
    n = 1
    for name in flags_of(kind):
      n *= len(self.lists[name])
    return n

  @property
  def points_per_group(self) -> int:
    return self.count(DATA) * self.count(TRACED)

  @property
  def data_sets(self) -> int:
    """U, the distinct data sets of the sweep (shared by every group)."""
    return self.count(DATA)

  def varying(self, *kinds: str) -> tuple[str, ...]:
    """The flags of these kinds with more than one value."""
    return tuple(n for n, f in SWEEP_FLAGS.items() if f.kind in kinds and len(self.lists[n]) > 1)


class Group(NamedTuple):
  """One compiled program's worth of sweep points.

  name: directory-safe name (`group_name`, e.g. 'smote', 'smote_median').
  points: S single-run configs, data-major (point s uses data set
  s // (S / num_data)), then the traced flags in table order.
  num_data: U, the data sets of the group (the same U for every group).
  """
  name: str
  points: tuple[RunConfig, ...]
  num_data: int


def resamplers(axes: SweepAxes) -> tuple[str, ...]:
  """Every resampler the sweep's groups run (--resamplers, or the swept defences')."""
  names = set(axes.resamplers)
  for d in axes.defences:
    names |= {defences.flags_of(d).get('resampler', axes.resamplers[0])}
  return tuple(sorted(names))


def _combos(axes: SweepAxes, kind: str) -> list[dict]:
  names = flags_of(kind)
  return [{SWEEP_FLAGS[n].field: v for n, v in zip(names, values)}
          for values in itertools.product(*(axes.lists[n] for n in names))]


def data_settings(axes: SweepAxes) -> list[dict]:
  """The U data sets as {field: value} in data-major point order."""
  return _combos(axes, DATA)


def make_groups(base: RunConfig, axes: SweepAxes) -> list[Group]:
  """The sweep's groups in run order (the code lists' product, in table order); a point
  with a named defence has its defence's flags set."""
  groups = []
  for code in _combos(axes, CODE):
    points = tuple(defences.apply(base.replace(**code, **data, **traced))
                   for data in _combos(axes, DATA) for traced in _combos(axes, TRACED))
    groups.append(Group(group_name(points[0]), points, axes.data_sets))
  names = [g.name for g in groups]
  if len(set(names)) != len(names):
    raise ValueError(f'two groups share a name: {names}')
  return groups


# The code fields named in a group's name even at their default value.
_ALWAYS_NAMED = ('resampler',)


def group_name(cfg: RunConfig) -> str:
  """A group's directory-safe name from a point's code settings: the resampler, then
  the other code values that are not their default, in table order ('smote',
  'smote_median', 'none_focal_adam'...). A named defence stands for the fields it sets
  ('fedar_median')."""
  fields = type(cfg).__dataclass_fields__
  set_by_defence = defences.flags_of(cfg.defence)
  parts = []
  for name in flags_of(CODE):
    field = SWEEP_FLAGS[name].field
    value = getattr(cfg, field)
    if field in set_by_defence or (field not in _ALWAYS_NAMED
                                   and value == fields[field].default):
      continue
    parts.append(format_value(value))
  return '_'.join(parts)


def point_settings(cfg: RunConfig) -> list[str]:
  """The SETTING_COLUMNS values of a point, as written to sweep.csv."""
  return [format_value(getattr(cfg, c)) for c in SETTING_COLUMNS]


def label_columns(axes: SweepAxes) -> tuple[str, ...]:
  """The setting columns that name a sweep's TensorBoard runs: every swept setting (a list
  of two or more values), in SETTING_COLUMNS order; the seed where nothing is swept."""
  return tuple(SWEEP_FLAGS[n].field for n in axes.varying(TRACED, DATA, CODE)) or ('seed',)


def point_label(cfg: RunConfig, columns: tuple[str, ...]) -> dict:
  """{column: value} naming a point's run: the `columns` (`label_columns`), every one,
  defaults included, as written to sweep.csv."""
  return {c: format_value(getattr(cfg, c)) for c in columns}


def point_hparams(cfg: RunConfig) -> dict:
  """Every setting column of a point as {column: float, int or str}: the point's record in
  TensorBoard's HParams table."""
  return {c: getattr(cfg, c) for c in SETTING_COLUMNS}
