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
also be in `round.HParams` and set by `train.build`).
"""
import dataclasses
import itertools
from typing import NamedTuple

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
                                    'sweep (real data; stacked data); default '
                                    '--attacker_fraction.'),
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

  name: directory-safe name, the code values joined by '_' (e.g. 'smote').
  points: S single-run configs, data-major (point s uses data set
  s // (S / num_data)), then threshold, seed, learning rate.
  num_data: U, the data sets of the group (the same U for every group).
  """
  name: str
  points: tuple[RunConfig, ...]
  num_data: int


def _combos(axes: SweepAxes, kind: str) -> list[dict]:
  names = flags_of(kind)
  return [{SWEEP_FLAGS[n].field: v for n, v in zip(names, values)}
          for values in itertools.product(*(axes.lists[n] for n in names))]


def data_settings(axes: SweepAxes) -> list[dict]:
  """The U data sets as {field: value} in data-major point order."""
  return _combos(axes, DATA)


def make_groups(base: RunConfig, axes: SweepAxes) -> list[Group]:
  """The sweep's groups in run order (the code lists' product, in table order)."""
  groups = []
  for code in _combos(axes, CODE):
    points = tuple(base.replace(**code, **data, **traced)
                   for data in _combos(axes, DATA) for traced in _combos(axes, TRACED))
    groups.append(Group(group_name(code), points, axes.data_sets))
  return groups


def group_name(values: dict) -> str:
  """A group's name from its code settings {field: value} (or a sweep.csv row)."""
  return '_'.join(format_value(values[SWEEP_FLAGS[n].field]) for n in flags_of(CODE))


def point_settings(cfg: RunConfig) -> list[str]:
  """The SETTING_COLUMNS values of a point, as written to sweep.csv."""
  return [format_value(getattr(cfg, c)) for c in SETTING_COLUMNS]
