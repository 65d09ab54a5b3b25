"""The columns of sweep.csv and summary.csv as the report reads them: which are settings
(the key of a summary row) and which metrics, their short names, sort order and labels."""
import csv
import math

from fedar_jax import sweep_axes


# A summary row's key: every setting column of sweep.csv but the seed (averaged over).
# summary.csv writes the LEAD ones first and the TRAILING ones (sweep_axes.TRAILING_COLUMNS)
# after the metrics, as sweep.csv does.
LEAD_KEY_COLUMNS = tuple(c for c in sweep_axes.SETTING_COLUMNS if c != 'seed')
TRAILING_KEY_COLUMNS = sweep_axes.TRAILING_COLUMNS
KEY_COLUMNS = LEAD_KEY_COLUMNS + TRAILING_KEY_COLUMNS


THRESHOLD = KEY_COLUMNS.index('threshold')


# sweep.csv columns that are settings or bookkeeping, not metrics.
NOT_METRICS = sweep_axes.ALL_SETTING_COLUMNS + ('round', 'round_s')


# Short names of the setting columns in tables and figure labels (default: the column
# with spaces); code values (resampler, aggregator, ...) are shown bare in labels.
HEADINGS = {'imbalance_ratio': 'IR', 'learning_rate': 'lr', 'attacker_fraction': 'attackers',
            'server_learning_rate': 'server lr', 'run': 'input'}


BARE = ('resampler', 'server_optimizer', 'aggregator', 'loss', 'client_optimizer', 'attack',
        'defence')


# Columns of text; every other column of sweep.csv and metrics.csv holds numbers.
TEXT_COLUMNS = tuple(e.field for e in sweep_axes.SWEEP_FLAGS.values() if e.type is str)


def read_rows(path: str) -> tuple[list[str], list[dict]]:
  """The header and the rows (dicts of strings) of the CSV file `path`.

  Raises ValueError naming the file, and the line where there is one, for a file
  without a header, a row with another number of cells than the header, or a cell of
  a number column that is not a number, or text that is not UTF-8.
  """
  with open(path, newline='') as f:
    reader = csv.reader(f)
    try:
      header = next(reader, None)
      if not header:
        raise ValueError(f'{path}: empty (no header line); rerun the command that writes it')
      rows = [_row(path, reader.line_num, header, cells) for cells in reader]
    except csv.Error as e:
      raise ValueError(f'{path}, line {reader.line_num}: {e}') from None
    except UnicodeDecodeError:
      raise ValueError(f'{path}: not UTF-8 text; restore the file or rerun the command that '
                       'writes it') from None
  return header, rows


def _row(path: str, line: int, header: list[str], cells: list[str]) -> dict:
  if len(cells) != len(header):
    raise ValueError(f'{path}, line {line}: {len(cells)} cells, the header has {len(header)}; '
                     'restore the file or rerun the command that writes it')
  row = dict(zip(header, cells))
  for column, cell in zip(header[:_known(header)], cells):
    if column in TEXT_COLUMNS:
      continue
    try:
      float(cell)
    except ValueError:
      raise ValueError(f'{path}, line {line}: {column} is {cell!r}, not a number; restore '
                       'the file or rerun the command that writes it') from None
  return row


# The last column the writers of metrics.csv / sweep.csv put down; columns after it are
# appended by newer writers and read as metrics where every cell is a number.
LAST_KNOWN = 'round_s'


def _known(header: list[str]) -> int:
  """How many leading columns of `header` the report knows (and checks)."""
  return header.index(LAST_KNOWN) + 1 if LAST_KNOWN in header else len(header)


def metric_columns(columns: list[str], rows: list[dict]) -> list[str]:
  """The metric columns of a sweep.csv: every column but the settings and bookkeeping,
  less appended columns (after LAST_KNOWN) with a cell that is not a number."""
  known = _known(columns)

  def numeric(c):
    try:
      for r in rows:
        float(r[c])
    except ValueError:
      return False
    return True
  return [c for i, c in enumerate(columns)
          if c not in NOT_METRICS and (i < known or numeric(c))]


def row_key(row) -> tuple:
  # Workdirs from before a setting column existed lack it: it reads as ''.
  return tuple(row.get(k, '') for k in KEY_COLUMNS)


def heading(column: str) -> str:
  """A setting column's short name ('IR', 'lr', 'data seed', 'trim fraction')."""
  return HEADINGS.get(column, column.replace('_', ' '))


def shown_keys(summary: list[dict]) -> list[str]:
  """The key columns report.md's tables show: those that vary across the summary (the
  first, imbalance ratio, where none does)."""
  return [c for c in KEY_COLUMNS if len({s.get(c, '') for s in summary}) > 1] or [
      KEY_COLUMNS[0]]


def sort_value(value: str):
  try:
    return (0, float(value), '')
  except ValueError:
    return (1, 0.0, value)


def sort_key(key) -> tuple:
  return tuple(sort_value(v) for v in key)


def panel_of(key) -> tuple:
  """A summary key without its threshold: what one line / panel of the plots shows."""
  return key[:THRESHOLD] + key[THRESHOLD + 1:]


def count_text(values, one: str, many: str) -> str:
  """'20 rounds', '1 seed', '5-20 rounds' from a collection of ints."""
  lo, hi = min(values), max(values)
  n = f'{lo}' if lo == hi else f'{lo}-{hi}'
  return f'{n} {one if hi == 1 else many}'


def spread(summary: list[dict]) -> str:
  seeds = max(s['n_seeds'] for s in summary)
  return f'mean ± std over {seeds} seeds' if seeds > 1 else '1 seed'


# The per-round figures are left out above this many panels (a 90-panel grid is 2340 x
# 17550 pixels).
MAX_PANELS = 24


def setting_label(setting: dict, varying=()) -> str:
  """'threshold 1.5, learning rate 0.001, median': the table's settings (threshold,
  learning rate and attacker fraction always, the other columns in `varying`)."""
  names = {'threshold': 'threshold', 'learning_rate': 'learning rate',
           'attacker_fraction': 'attacker fraction'}
  return ', '.join(v if k in BARE else f'{names.get(k, heading(k))} {v}'
                   for k, v in setting.items()
                   if v != '' and (k in names or k in varying))


def varying_settings(tables: list[dict]) -> set:
  """The setting columns whose value differs between tables."""
  return {k for k in tables[0]['setting'] if len({t['setting'][k] for t in tables}) > 1}


# Setting columns an attack table spreads over its columns and panels, or averages over.
ATTACK_AXES = ('attacker_fraction', 'attack', 'data_seed')


def defence_fields(name: str) -> tuple:
  from fedar_jax import defences  # No JAX.
  return tuple(defences.flags_of(name)) if name in defences.DEFENCES else ()


def identical_groups(columns: dict) -> list[list[str]]:
  """Groups (in order) of the names of `columns` ({name: [float or None, ...]}) whose values
  agree to 6 decimals everywhere (None and nan alike), as accuracy, sensitivity,
  specificity and G-mean can in the binary case; a group's first name is the one shown."""
  groups = {}
  for name, values in columns.items():
    key = tuple(None if v is None or math.isnan(v) else round(v, 6) for v in values)
    groups.setdefault(key, []).append(name)
  return list(groups.values())
