"""The report's tables: summary.csv (final-round metrics per point over seeds), the
best thresholds, the resampler x IR and defence x attacker-fraction tables, report.md."""
import collections
import csv
import math
import os

import numpy as np

from fedar_jax import sweep_axes
from fedar_jax.report_stats import TEST_NAME, interval95, separable_best
from fedar_jax.report_columns import (ATTACK_AXES, BARE, KEY_COLUMNS, LEAD_KEY_COLUMNS,
                                      THRESHOLD, TRAILING_KEY_COLUMNS, count_text,
                                      defence_fields, heading, identical_groups,
                                      metric_columns, panel_of, row_key, setting_label,
                                      shown_keys, sort_key, sort_value, spread,
                                      varying_settings)


def summarize(columns: list[str], rows: list[dict]) -> tuple[list[str], list[dict]]:
  """Final-round metrics per point (KEY_COLUMNS), mean and std over seeds, then (at the
  end of the row) the half width of each metric's 95% t-interval of the mean.

  Returns (header, rows) for summary.csv; values are floats (std and ci95 None for one
  seed). Columns of sweep.csv the report does not know are metrics like any other.
  """
  metric_cols = metric_columns(columns, rows)
  final = {}
  for row in rows:
    point = row_key(row) + (row['seed'],)
    if point not in final or int(row['round']) > int(final[point]['round']):
      final[point] = row
  by_key = collections.defaultdict(list)
  for point, row in final.items():
    by_key[point[:-1]].append(row)
  header = (list(LEAD_KEY_COLUMNS) + ['n_seeds', 'rounds']
            + [f'{m}_{stat}' for m in metric_cols for stat in ('mean', 'std')]
            + [f'{m}_ci95' for m in metric_cols] + list(TRAILING_KEY_COLUMNS))
  out = []
  for key in sorted(by_key, key=sort_key):
    group = by_key[key]
    entry = dict(zip(KEY_COLUMNS, key))
    entry['n_seeds'] = len(group)
    entry['rounds'] = min(int(r['round']) for r in group)
    for m in metric_cols:
      values = np.array([float(r[m]) for r in group])
      entry[f'{m}_mean'] = float(values.mean())
      entry[f'{m}_std'] = _std(values) if len(values) > 1 else None
      half = interval95(values)[1] if np.all(np.isfinite(values)) else math.nan
      entry[f'{m}_ci95'] = None if math.isnan(half) else half
    out.append(entry)
  return header, out


def _std(values: np.ndarray) -> float:
  """The sample std; for values that are not all finite (epsilon inf without DP), 0 where
  they are all equal, else nan."""
  if np.all(np.isfinite(values)):
    return float(values.std(ddof=1))
  return 0.0 if np.all(values == values[0]) else float('nan')


def write_summary(path: str, header: list[str], rows: list[dict]) -> None:
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for row in rows:
      writer.writerow([_fmt(row[h]) for h in header])


def _fmt(value) -> str:
  if value is None:
    return ''
  return f'{value:.6f}' if isinstance(value, float) else str(value)


def _pm(row, metric) -> str:
  std = row[f'{metric}_std']
  return f'{row[f"{metric}_mean"]:.4f}' + (f' ± {std:.4f}' if std is not None else '')


def best_thresholds(rows: list[dict], metric: str = 'gmean') -> dict:
  """A summary key without its threshold (`panel_of`) -> (winner or None, the thresholds
  not separable from the best, {threshold: (mean, std or None)}) of the final `metric`,
  by `report_stats.separable_best` over seeds (sweep.csv rows)."""
  by_panel = collections.defaultdict(lambda: collections.defaultdict(dict))
  for row in _final_rows(rows):
    key = row_key(row)
    by_panel[panel_of(key)][key[THRESHOLD]][row['seed']] = float(row[metric])
  out = {}
  for p in sorted(by_panel, key=sort_key):
    samples = by_panel[p]
    winner, tied = separable_best(samples)
    stats = {t: _mean_std(list(v.values())) for t, v in samples.items()}
    out[p] = (winner, tied, stats)
  return out


def _mean_std(values) -> tuple:
  v = np.asarray(values, dtype=np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None


def identical_metrics(summary: list[dict], metrics: list[str]) -> list[list[str]]:
  """Groups of `metrics` whose mean and std agree (6 decimals) in every summary row
  (`identical_groups`); first = shown."""
  return identical_groups({m: [x for s in summary for x in (s[f'{m}_mean'], s[f'{m}_std'])]
                           for m in metrics})


def coinciding_settings(summary: list[dict], metrics: list[str], keys: list[str]) -> list:
  """Groups (of two or more) of summary rows whose final `metrics` (mean and std, 6
  decimals) are all identical, as setting labels over the shown `keys`."""
  groups = {}
  for s in summary:
    sig = tuple((round(s[f'{m}_mean'], 6), s[f'{m}_std'] and round(s[f'{m}_std'], 6))
                for m in metrics)
    groups.setdefault(sig, []).append(', '.join(
        s[c] if c in BARE else f'{heading(c)} {s[c]}' for c in keys))
  return [g for g in groups.values() if len(g) > 1]


# The final-metrics table's metrics, in order.
TABLE_METRICS = ('gmean', 'f1', 'sensitivity', 'specificity', 'precision', 'accuracy')


def write_markdown(path: str, columns: list[str], summary: list[dict], plots: list[str],
                   sections: list[str] = (), notes: list[str] = (), rows: list[dict] = ()
                   ) -> None:
  """report.md: the best threshold (where thresholds are swept), the final metrics and
  per-class recall of every setting (only the settings that vary), `sections`, the plots
  (and `notes` on figures left out)."""
  classes = [c[len('recall_'):] for c in columns if c.startswith('recall_')]
  keys = shown_keys(summary)
  panel_keys = [c for c in keys if c != 'threshold']
  lines = ['# Sweep report', '',
           f'{len(summary)} settings; final-round metrics, '
           f'{spread(summary).replace("std", "sample std")} (from `sweep.csv`; all '
           f'numbers, with 95% intervals, also in `summary.csv`).', '']
  constant = [c for c in KEY_COLUMNS if c not in keys and any(s[c] for s in summary)]
  if constant:
    lines += ['Every setting shares ' + ', '.join(
        f'{heading(c)} {summary[0][c]}' for c in constant) + '; the tables show the '
              'settings that vary.', '']
  if 'threshold' in keys and rows:
    lines += ['## Best threshold by final G-mean', '',
              f'Best: the highest mean where a {TEST_NAME} separates it from every other '
              'threshold; otherwise the thresholds not separable from the highest mean.', '',
              '| ' + ''.join(f'{heading(c)} | ' for c in panel_keys)
              + 'best threshold | G-mean |', '|---' * (len(panel_keys) + 2) + '|']
    index = [KEY_COLUMNS.index(c) for c in panel_keys]
    for p, (winner, tied, stats) in best_thresholds(rows).items():
      head = ''.join(f'{(p[:THRESHOLD] + ("",) + p[THRESHOLD:])[i]} | ' for i in index)
      if winner:
        lines.append(f'| {head}**{winner}** | {_text(*stats[winner])} |')
      else:
        top = max(stats, key=lambda t: stats[t][0])
        lines.append(f'| {head}not separable: {", ".join(tied)} | {_text(*stats[top])} |')
  metrics = [m for m in TABLE_METRICS if f'{m}_mean' in summary[0]]
  groups = identical_metrics(summary, metrics)
  shown = [g[0] for g in groups]
  lines += ['', '## Final metrics', '',
            '| ' + ''.join(f'{heading(c)} | ' for c in keys) + 'seeds | '
            + ' | '.join(' = '.join(g) for g in groups) + ' | resampled clients |',
            '|---' * (len(shown) + len(keys) + 2) + '|']
  for s in summary:
    lines.append(f'| {"".join(s[c] + " | " for c in keys)}{s["n_seeds"]} | '
                 + ' | '.join(_pm(s, m) for m in shown)
                 + f' | {s["resampled_clients_mean"]:.1f} |')
  same = [g for g in groups if len(g) > 1]
  if same:
    lines += ['', 'Identical in every setting (one column): '
              + '; '.join(' = '.join(g) for g in same) + '.']
  coincide = coinciding_settings(summary, metrics + [f'recall_{c}' for c in classes], keys)
  if coincide:
    lines += ['', 'Settings with identical final metrics (the same runs): '
              + '; '.join(' = '.join(f'({x})' for x in g) for g in coincide) + '.']
  lines += ['', '## Final per-class recall', '',
            '| ' + ''.join(f'{heading(c)} | ' for c in keys)
            + ' | '.join(f'class {c}' for c in classes) + ' |',
            '|---' * (len(classes) + len(keys)) + '|']
  for s in summary:
    lines.append(f'| {"".join(s[c] + " | " for c in keys)}'
                 + ' | '.join(_pm(s, f'recall_{c}') for c in classes) + ' |')
  lines += [''] + list(sections)
  lines += ['', '## Plots', '']
  lines += [n for note in notes for n in (note, '')]
  lines += [f'![{os.path.basename(p)}](plots/{os.path.basename(p)})' for p in plots]
  lines = [l for i, l in enumerate(lines) if l or i == 0 or lines[i - 1]]  # One blank line.
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


def _text(mean, std) -> str:
  return f'{mean:.4f}' + (f' ± {std:.4f}' if std is not None else '')


def cell_tables(rows: list[dict], row_column: str, column_column: str,
                metric: str = 'gmean') -> list[dict]:
  """Final `metric` of sweep.csv rows per (row_column value, column_column value) cell and
  replicate, one table per other setting (every key column but those two and the data seed).

  Returns [{'setting': {column: value}, 'rows': [...] ('none' first, then sorted),
  'columns': [...] (numeric order), 'samples': {(row, column): {replicate: value}},
  'cells': {(row, column): (mean, sample std or None, n)}, 'final': [the final sweep.csv
  rows of the table], 'rounds': {final round of each point}, 'seeds': the most replicates
  of a cell}], in setting order.
  """
  setting_columns = [c for c in KEY_COLUMNS if c not in (row_column, column_column, 'data_seed')]
  samples = collections.defaultdict(lambda: collections.defaultdict(dict))
  final = collections.defaultdict(list)
  for row in _final_rows(rows):
    setting = tuple(row.get(c, '') for c in setting_columns)
    samples[setting][(row[row_column], row[column_column])][_replicate(row)] = float(row[metric])
    final[setting].append(row)
  out = []
  for setting in sorted(samples, key=sort_key):
    mine = samples[setting]
    cells = {k: (*_mean_std(list(v.values())), len(v)) for k, v in mine.items()}
    out.append({'setting': dict(zip(setting_columns, setting)),
                'rows': sorted({r for r, _ in mine}, key=lambda r: (r != 'none', r)),
                'columns': sorted({c for _, c in mine}, key=float), 'samples': dict(mine),
                'cells': cells, 'final': final[setting],
                'rounds': {int(r['round']) for r in final[setting]},
                'seeds': max(c[2] for c in cells.values())})
  return out


def ir_tables(rows: list[dict], metric: str = 'gmean') -> list[dict]:
  """The paper's table shape: final `metric` per resampler (rows) and imbalance ratio
  (columns), mean and sample std over every seed and data seed of the cell.

  One table per other setting (every key column but the ratio, the resampler and the
  data seed: threshold, learning rate, attacker fraction, aggregator, ...).
  Returns [{'setting': {column: value}, 'resamplers': [...], 'ratios': [...],
  'cells': {(resampler, ratio): (mean, std or None, n)}, 'best': {ratio: [resampler] or
  []}, 'not_separable': {ratio: [resamplers]}, 'rounds': int, 'seeds': int}] (best and
  not_separable: `column_best`).
  """
  out = []
  for t in cell_tables(rows, 'resampler', 'imbalance_ratio', metric):
    best, tied = column_best(t['samples'], t['rows'], t['columns'])
    out.append({'setting': t['setting'], 'resamplers': t['rows'], 'ratios': t['columns'],
                'cells': t['cells'], 'best': best, 'not_separable': tied,
                'rounds': min(t['rounds']), 'seeds': t['seeds']})
  return out


def _replicate(row: dict) -> tuple:
  """The pairing key of a final value: its seed and data seed."""
  return row['seed'], row.get('data_seed', '')


def column_best(samples: dict, rows: list, columns: list) -> tuple[dict, dict]:
  """Per column c: ({c: [the row separably best] or []}, {c: [rows not separable from the
  highest mean] or []}) of samples {(row, column): {replicate: value}}; a column of one
  row has no best."""
  best, tied = {}, {}
  for c in columns:
    mine = {r: samples[(r, c)] for r in rows if (r, c) in samples}
    winner, rest = separable_best(mine) if len(mine) > 1 else (None, [])
    best[c], tied[c] = [winner] if winner else [], rest
  return best, tied


def _final_rows(rows: list[dict]) -> list[dict]:
  """The last round's sweep.csv row of every point (every setting column, seed included),
  in sweep.csv order."""
  final = {}
  for row in rows:
    point = tuple(row.get(k, '') for k in sweep_axes.ALL_SETTING_COLUMNS)
    if point not in final or int(row['round']) > int(final[point]['round']):
      final[point] = row
  return list(final.values())


def cell_rows(rows, columns, cells: dict, best: dict) -> list[str]:
  """Markdown rows `| row | cell | ... |`: cells[(row, column)] = (mean, std or None, n)
  as 'mean ± std' (blank where absent), bold where row is in best[column]."""
  lines = []
  for r in rows:
    texts = []
    for c in columns:
      if (r, c) not in cells:
        texts.append('')
        continue
      mean, std, _ = cells[(r, c)]
      text = f'{mean:.4f}' + (f' ± {std:.4f}' if std is not None else '')
      texts.append(f'**{text}**' if r in best[c] else text)
    lines.append(f'| {r} | ' + ' | '.join(texts) + ' |')
  return lines


def _same_rows(rows: list, cells: dict) -> list[str]:
  """'Equal in every column (4 decimals): smote = smote_tomek.' for rows whose means agree."""
  from fedar_jax.report_axes import coinciding
  groups = coinciding({r: {c: v[0] for (row, c), v in cells.items() if row == r} for r in rows})
  same = [' = '.join(g) for g in groups if len(g) > 1]
  return ['', f'Equal in every column (4 decimals): {"; ".join(same)}.'] if same else []


def _not_separable(tied: dict, name: str, total: int) -> list[str]:
  """'Not separable: IR 2: enn, smote; IR 10: all 23.' (total: the table's rows)."""
  texts = [f'{name} {c}: ' + (f'all {total}' if len(rows) == total > 2 else ', '.join(rows))
           for c, rows in tied.items() if rows]
  return ['', 'Not separable: ' + '; '.join(texts) + '.'] if texts else []


def tested_table(title: str, row_name: str, column_name: str, rows: list, columns: list,
                 table: dict, headers: list[str] | None = None) -> list[str]:
  """report.md lines of one table of `table`'s cells ('cells', 'best', 'not_separable'):
  '### title', a row per `rows` value, a column per `columns` value (headed `headers`,
  by default 'column_name c'), then the columns' rows not separable from the best and the
  rows equal in every column."""
  headers = headers or [f'{column_name} {c}' for c in columns]
  return ([f'### {title}', '',
           f'| {row_name} | ' + ' | '.join(headers) + ' |',
           '|---' * (len(columns) + 1) + '|']
          + cell_rows(rows, columns, table['cells'], table['best'])
          + _not_separable(table['not_separable'], column_name, len(rows))
          + _same_rows(rows, table['cells']) + [''])


def ir_table_markdown(tables: list[dict]) -> list[str]:
  """report.md lines: one resampler x imbalance ratio table of final G-mean per setting."""
  lines = ['## Final G-mean by resampler and imbalance ratio', '',
           'Mean ± sample std over seeds (and data seeds); in bold the best per column where '
           f'a {TEST_NAME} separates it from every other row; the columns where none does '
           'name, below the table, the rows not separable from the highest mean.', '']
  varying = varying_settings(tables)
  for t in tables:
    lines += tested_table(f'{setting_label(t["setting"], varying)} ({t["rounds"]} rounds, '
                          f'{t["seeds"]} seeds)', 'resampler', 'IR', t['resamplers'],
                          t['ratios'], t)
  return lines


def attack_tables(rows: list[dict], metric: str = 'gmean') -> list[dict]:
  """The attack study's table shape: final `metric` per defence (rows) and attacker
  fraction (columns), one table per attack; mean and sample std over every seed and data
  seed of the cell.

  A defence is a combination of the other setting columns; its label is the named
  defence (--defences) where there is one, plus the other columns that vary between
  the rows. Rows keep sweep.csv's order (the order of the sweep lists).
  Returns [{'attack': str ('' in a sweep.csv without the column), 'defences': [labels],
  'fractions': [...], 'cells': {(label, fraction): (mean, std or None, n)},
  'best': {fraction: [label] or []}, 'not_separable': {fraction: [labels]}, 'rounds': int,
  'seeds': int}] (best and not_separable: `column_best`).
  """
  final = _final_rows(rows)
  other = [c for c in KEY_COLUMNS if c not in ATTACK_AXES]
  keys = list(dict.fromkeys(tuple(r.get(c, '') for c in other) for r in final))
  varying = [i for i, c in enumerate(other) if len({k[i] for k in keys}) > 1]
  named = other.index('defence')
  set_by_defences = {f for k in keys if k[named] for f in defence_fields(k[named])}

  def label(key):
    parts = [key[named]] if key[named] else []
    for i in varying:
      if i != named and not (key[named] and other[i] in set_by_defences):
        parts.append(key[i] if other[i] in BARE else f'{heading(other[i])} {key[i]}')
    return ', '.join(parts) or 'all'
  labels = {k: label(k) for k in keys}
  cells = collections.defaultdict(dict)
  rounds = collections.defaultdict(set)
  for r in final:
    attack = r.get('attack', '')
    cells[attack, labels[tuple(r.get(c, '') for c in other)],
          r.get('attacker_fraction', '')][_replicate(r)] = float(r[metric])
    rounds[attack].add(int(r['round']))
  out = []
  for attack in dict.fromkeys(r.get('attack', '') for r in final):
    mine = {(d, f): v for (a, d, f), v in cells.items() if a == attack}
    fractions = sorted({f for _, f in mine}, key=sort_value)
    defences = [labels[k] for k in keys if any((labels[k], f) in mine for f in fractions)]
    defences = list(dict.fromkeys(defences))
    stats = {c: (*_mean_std(list(v.values())), len(v)) for c, v in mine.items()}
    best, tied = column_best(mine, defences, fractions)
    out.append({'attack': attack, 'defences': defences, 'fractions': fractions,
                'cells': stats, 'best': best, 'not_separable': tied,
                'rounds': min(rounds[attack]),
                'seeds': max(c[2] for c in stats.values())})
  return out


def attack_table_markdown(tables: list[dict]) -> list[str]:
  """report.md lines: one defence x attacker fraction table of final G-mean per attack."""
  lines = ['## Final G-mean by defence and attacker fraction', '',
           'Mean ± sample std over seeds (and data seeds); in bold the best per column where '
           f'a {TEST_NAME} separates it from every other row; otherwise the rows not '
           'separable from the highest mean are named below the table.', '']
  for t in tables:
    lines += tested_table(f'attack {t["attack"] or "(default)"} ('
                          f'{count_text({t["rounds"]}, "round", "rounds")}, '
                          f'{count_text({t["seeds"]}, "seed", "seeds")})', 'defence',
                          'attackers', t['defences'], t['fractions'], t)
  return lines
