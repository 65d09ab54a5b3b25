"""How the report's figures lay out a sweep: which swept setting is the x axis, which one
the lines, which the panels, and the per-point samples over seeds they draw (no plotting).

A point's settings are the sweep.csv setting columns but its replicates (seed, data seed):
the figures and the paired tests average and pair over those. A swept setting that a code
setting fixes (the threshold of a named defence) is left to that code setting.
"""
import collections
from typing import NamedTuple

from fedar_jax import sweep_axes
from fedar_jax.report_columns import TEXT_COLUMNS, heading, sort_value

REPLICATES = ('seed', 'data_seed')
# 'run': the input a row comes from when several workdirs are compared ('' otherwise). The
# trailing setting columns (the DP parameters) are settings like the others: a sweep over
# --dp_noise_multipliers has a point per noise multiplier.
SETTINGS = ('run',) + tuple(c for c in sweep_axes.ALL_SETTING_COLUMNS if c not in REPLICATES)
TEXT = TEXT_COLUMNS + ('run',)

# Code settings in the order they are chosen as lines, then panels.
LINE_PRIORITY = ('run', 'defence', 'resampler', 'loss', 'aggregator', 'server_optimizer',
                 'client_optimizer', 'attack')
# Numeric settings in the order they are chosen as the x axis (then sweep.csv order).
X_PRIORITY = ('imbalance_ratio', 'attacker_fraction', 'threshold')

# More lines than this on one axis: small multiples (each line with the baseline).
MAX_LINES = 8

# Figure file per x column (the others: gmean_vs_<column>.png).
FIGURE_NAMES = {'imbalance_ratio': 'gmean_vs_ir.png', 'attacker_fraction':
                'gmean_vs_attackers.png', 'threshold': 'gmean_vs_threshold.png'}

# Where two lines' means agree at every point to this many decimals they are one line.
COINCIDE_DECIMALS = 4


class Layout(NamedTuple):
  """x: the numeric setting on the x axis (None: a ranked dot plot of the lines);
  lines: the setting drawn as lines (None: one line); panels: the settings whose
  combinations are the panels."""
  x: str | None
  lines: str | None
  panels: tuple


def settings_of(row: dict) -> tuple:
  """A sweep.csv row's SETTINGS values ('' where an older sweep.csv lacks the column)."""
  return tuple(row.get(c, '') for c in SETTINGS)


def replicate_of(row: dict) -> tuple:
  return tuple(row.get(c, '') for c in REPLICATES)


def final_rows(rows: list[dict]) -> list[dict]:
  """The last round's row of every point (settings and replicate), in sweep.csv order."""
  final = {}
  for row in rows:
    point = settings_of(row) + replicate_of(row)
    if point not in final or int(row['round']) > int(final[point]['round']):
      final[point] = row
  return list(final.values())


def final_samples(rows: list[dict], metric: str = 'gmean') -> dict:
  """{settings: {replicate: final `metric`}} in sweep.csv order."""
  out = collections.defaultdict(dict)
  for row in final_rows(rows):
    out[settings_of(row)][replicate_of(row)] = float(row[metric])
  return dict(out)


def round_samples(rows: list[dict], metric: str = 'gmean') -> dict:
  """{settings: {round: {replicate: `metric`}}}."""
  out = collections.defaultdict(lambda: collections.defaultdict(dict))
  for row in rows:
    out[settings_of(row)][int(row['round'])][replicate_of(row)] = float(row[metric])
  return out


def values_of(points, column: str) -> list[str]:
  """The distinct values of `column` among `points` (settings tuples): numbers ascending,
  text in sweep order."""
  i = SETTINGS.index(column)
  values = list(dict.fromkeys(p[i] for p in points))
  return values if column in TEXT else sorted(values, key=sort_value)


def _determines(points, by: str, column: str) -> bool:
  i, j = SETTINGS.index(by), SETTINGS.index(column)
  seen = {}
  return all(seen.setdefault(p[i], p[j]) == p[j] for p in points)


def swept(points) -> list[str]:
  """The settings that vary among `points`, less those a code setting of higher priority
  fixes (each of its values has one value of them); code settings first, in LINE_PRIORITY
  order, then numbers in sweep.csv order."""
  varying = [c for c in SETTINGS if len({p[SETTINGS.index(c)] for p in points}) > 1]
  order = ([c for c in LINE_PRIORITY if c in varying]
           + [c for c in varying if c not in LINE_PRIORITY])
  kept = []
  for c in order:
    if not any(k in TEXT and _determines(points, k, c) for k in kept):
      kept.append(c)
  return kept


def layouts(points) -> list[Layout]:
  """One layout per swept numeric setting (as x, X_PRIORITY first); lines: the first
  swept code setting, else the next swept number; panels: the rest. No swept number:
  one ranked dot plot of the first swept setting (none when nothing varies)."""
  kept = swept(points)
  numbers = [c for c in kept if c not in TEXT]
  numbers.sort(key=lambda c: X_PRIORITY.index(c) if c in X_PRIORITY else len(X_PRIORITY))
  out = []
  for x in numbers:
    rest = [c for c in kept if c != x]
    lines = next((c for c in rest if c in TEXT), rest[0] if rest else None)
    out.append(Layout(x, lines, tuple(c for c in rest if c != lines)))
  if not numbers and kept:
    out.append(Layout(None, kept[0], tuple(kept[1:])))
  return out


def figure_name(layout: Layout) -> str:
  if layout.x is None:
    return f'gmean_by_{layout.lines}.png'
  return FIGURE_NAMES.get(layout.x, f'gmean_vs_{layout.x}.png')


def baseline(column: str | None, values: list[str]) -> str | None:
  """The line of a code column drawn emphasised: 'none' where it is a value, else the first;
  None for lines of a number (IR, threshold: no value is the reference)."""
  if column not in TEXT or not values:
    return None
  return 'none' if 'none' in values else values[0]


def label(column: str, value: str) -> str:
  """'smote' (code settings bare), 'IR 10', 'server lr 0.1'."""
  return value if column in TEXT else f'{heading(column)} {value}'


def panel_label(columns, values) -> str:
  """'attack skew, server lr 0.1': every column named (panels have no legend title)."""
  return ', '.join(f'{heading(c)} {v}' for c, v in zip(columns, values))


def coinciding(curves: dict) -> list[list]:
  """Groups (in input order) of the keys of `curves` ({line: {where: mean}}) whose means
  agree at every `where` to COINCIDE_DECIMALS; lines alone are groups of one."""
  groups = []
  for line, curve in curves.items():
    rounded = {k: round(v, COINCIDE_DECIMALS) for k, v in curve.items()}
    for g in groups:
      if g[1] == rounded:
        g[0].append(line)
        break
    else:
      groups.append(([line], rounded))
  return [g for g, _ in groups]
