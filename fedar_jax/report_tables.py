"""The report's tables: summary.csv (final-round metrics per point over seeds), the
best thresholds, the resampler x IR and defence x attacker-fraction tables, report.md."""
import collections
import csv
import os

import numpy as np

from fedar_jax import sweep_axes
from fedar_jax.report_columns import (ATTACK_AXES, BARE, KEY_COLUMNS, LEAD_KEY_COLUMNS,
                                      MAX_PANELS, NOT_METRICS, TIE_TOL, TRAILING_KEY_COLUMNS,
                                      count_text, defence_fields, heading, panel_of, row_key,
                                      setting_label, shown_keys, sort_key, sort_value, spread,
                                      too_many_panels, varying_settings)


def summarize(columns: list[str], rows: list[dict]) -> tuple[list[str], list[dict]]:
  """Final-round metrics per point (KEY_COLUMNS), mean and std over seeds.

  Returns (header, rows) for summary.csv; values are floats (std None for one seed).
  """
  metric_cols = [c for c in columns if c not in NOT_METRICS]
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
            + list(TRAILING_KEY_COLUMNS))
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


def best_thresholds(summary: list[dict], metric: str = 'gmean') -> dict:
  """A summary key without its threshold (`panel_of`) -> (best summary row, thresholds tied
  at the best final `metric` mean within TIE_TOL, in summary order)."""
  by_panel = collections.defaultdict(list)
  for s in summary:
    by_panel[panel_of(row_key(s))].append(s)
  out = {}
  for p, pts in by_panel.items():
    best = max(pts, key=lambda s: s[f'{metric}_mean'])
    out[p] = (best, [s['threshold'] for s in pts
                     if best[f'{metric}_mean'] - s[f'{metric}_mean'] <= TIE_TOL])
  return out


def write_markdown(path: str, columns: list[str], summary: list[dict], plots: list[str],
                   sections: list[str] = ()) -> None:
  classes = [c[len('recall_'):] for c in columns if c.startswith('recall_')]
  keys = shown_keys(summary)
  panel_keys = [c for c in keys if c != 'threshold']
  cells = lambda s, cols: ' | '.join(s[c] for c in cols)
  lines = ['# Sweep report', '',
           f'{len(summary)} settings; final-round metrics, '
           f'{spread(summary).replace("std", "sample std")} (from `sweep.csv`; all '
           f'numbers also in `summary.csv`).', '',
           '## Best threshold by final G-mean', '',
           'Thresholds whose mean final G-mean agrees to 6 decimals are tied and listed '
           'together.', '',
           '| ' + ' | '.join(heading(c) for c in panel_keys) + ' | best threshold | G-mean |',
           '|---' * (len(panel_keys) + 2) + '|']
  for p, (s, tied) in best_thresholds(summary).items():
    names = tied[0] if len(tied) == 1 else f'{", ".join(tied)} tied'
    lines.append(f'| {cells(s, panel_keys)} | {names} | {_pm(s, "gmean")} |')
  metrics = ['gmean', 'f1', 'sensitivity', 'specificity', 'precision', 'accuracy']
  lines += ['', '## Final metrics', '',
            '| ' + ' | '.join(heading(c) for c in keys) + ' | seeds | '
            + ' | '.join(metrics) + ' | resampled clients |',
            '|---' * (len(metrics) + len(keys) + 2) + '|']
  for s in summary:
    lines.append(f'| {cells(s, keys)} | {s["n_seeds"]} | '
                 + ' | '.join(_pm(s, m) for m in metrics)
                 + f' | {s["resampled_clients_mean"]:.1f} |')
  lines += ['', '## Final per-class recall', '',
            '| ' + ' | '.join(heading(c) for c in keys) + ' | '
            + ' | '.join(f'class {c}' for c in classes) + ' |',
            '|---' * (len(classes) + len(keys)) + '|']
  for s in summary:
    lines.append(f'| {cells(s, keys)} | '
                 + ' | '.join(_pm(s, f'recall_{c}') for c in classes) + ' |')
  lines += [''] + list(sections)
  lines += ['', '## Plots', '']
  many = too_many_panels(summary)
  if many:
    lines += [f'{many} settings: the per-setting figures (G-mean vs threshold, G-mean per '
              f'round, per-class recall) are left out above {MAX_PANELS}; their numbers are '
              'in the tables above and in `summary.csv`.', '']
  lines += [f'![{os.path.basename(p)}](plots/{os.path.basename(p)})' for p in plots]
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


def ir_tables(rows: list[dict], metric: str = 'gmean') -> list[dict]:
  """The paper's table shape: final `metric` per resampler (rows) and imbalance ratio
  (columns), mean and sample std over every seed and data seed of the cell.

  One table per other setting (every key column but the ratio, the resampler and the
  data seed: threshold, learning rate, attacker fraction, aggregator, ...).
  Returns [{'setting': {column: value}, 'resamplers': [...], 'ratios': [...],
  'cells': {(resampler, ratio): (mean, std or None, n)}, 'best': {ratio: [resamplers]},
  'rounds': int, 'seeds': int}]; best lists every resampler whose mean equals the
  column's best at the 4 decimals shown (ties).
  """
  setting_columns = [c for c in KEY_COLUMNS
                     if c not in ('imbalance_ratio', 'resampler', 'data_seed')]
  tables = collections.defaultdict(lambda: collections.defaultdict(list))
  rounds = collections.defaultdict(set)
  for row in _final_rows(rows):
    setting = tuple(row.get(c, '') for c in setting_columns)
    tables[setting][(row['imbalance_ratio'], row['resampler'])].append(float(row[metric]))
    rounds[setting].add(int(row['round']))
  out = []
  for setting in sorted(tables, key=sort_key):
    values = tables[setting]
    ratios = sorted({ir for ir, _ in values}, key=float)
    resamplers = sorted({r for _, r in values}, key=lambda r: (r != 'none', r))
    cells = {}
    for (ir, r), v in values.items():
      v = np.asarray(v)
      cells[(r, ir)] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None, len(v))
    best = {}
    for ir in ratios:
      top = max(round(cells[(r, ir)][0], 4) for r in resamplers if (r, ir) in cells)
      best[ir] = [r for r in resamplers if (r, ir) in cells and round(cells[(r, ir)][0], 4) == top]
    out.append({'setting': dict(zip(setting_columns, setting)),
                'resamplers': resamplers, 'ratios': ratios, 'cells': cells, 'best': best,
                'rounds': min(rounds[setting]),
                'seeds': max(c[2] for c in cells.values())})
  return out


def _final_rows(rows: list[dict]) -> list[dict]:
  """The last round's sweep.csv row of every point (every setting column, seed included),
  in sweep.csv order."""
  final = {}
  for row in rows:
    point = tuple(row.get(k, '') for k in sweep_axes.ALL_SETTING_COLUMNS)
    if point not in final or int(row['round']) > int(final[point]['round']):
      final[point] = row
  return list(final.values())


def _cell_rows(rows, columns, cells: dict, best: dict) -> list[str]:
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


def ir_table_markdown(tables: list[dict]) -> list[str]:
  """report.md lines: one resampler x imbalance ratio table of final G-mean per setting."""
  lines = ['## Final G-mean by resampler and imbalance ratio', '',
           'Mean ± sample std over seeds (and data seeds); the best per column in bold '
           '(ties: all of them, named below the table).', '']
  varying = varying_settings(tables)
  for t in tables:
    lines += [f'### {setting_label(t["setting"], varying)} ({t["rounds"]} rounds, '
              f'{t["seeds"]} seeds)', '',
              '| resampler | ' + ' | '.join(f'IR {ir}' for ir in t['ratios']) + ' |',
              '|---' * (len(t['ratios']) + 1) + '|']
    lines += _cell_rows(t['resamplers'], t['ratios'], t['cells'], t['best'])
    ties = [f'IR {ir}: {", ".join(b)}' for ir, b in t['best'].items() if len(b) > 1]
    if ties:
      lines += ['', 'Ties for best: ' + '; '.join(ties) + '.']
    lines.append('')
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
  'best': {fraction: [labels]}, 'rounds': int, 'seeds': int}]; best lists every label
  whose mean equals the column's best at the 4 decimals shown.
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
  cells = collections.defaultdict(list)
  rounds = collections.defaultdict(set)
  for r in final:
    attack = r.get('attack', '')
    cells[attack, labels[tuple(r.get(c, '') for c in other)],
          r.get('attacker_fraction', '')].append(float(r[metric]))
    rounds[attack].add(int(r['round']))
  out = []
  for attack in dict.fromkeys(r.get('attack', '') for r in final):
    mine = {(d, f): v for (a, d, f), v in cells.items() if a == attack}
    fractions = sorted({f for _, f in mine}, key=sort_value)
    defences = [labels[k] for k in keys if any((labels[k], f) in mine for f in fractions)]
    defences = list(dict.fromkeys(defences))
    stats = {c: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None, len(v))
             for c, v in mine.items()}
    best = {}
    for f in fractions:
      top = max(round(stats[(d, f)][0], 4) for d in defences if (d, f) in stats)
      best[f] = [d for d in defences if (d, f) in stats and round(stats[(d, f)][0], 4) == top]
    out.append({'attack': attack, 'defences': defences, 'fractions': fractions,
                'cells': stats, 'best': best, 'rounds': min(rounds[attack]),
                'seeds': max(c[2] for c in stats.values())})
  return out


def attack_table_markdown(tables: list[dict]) -> list[str]:
  """report.md lines: one defence x attacker fraction table of final G-mean per attack."""
  lines = ['## Final G-mean by defence and attacker fraction', '',
           'Mean ± sample std over seeds (and data seeds); the best per column in bold '
           '(ties at 4 decimals: all of them).', '']
  for t in tables:
    lines += [f'### attack {t["attack"] or "(default)"} ('
              f'{count_text({t["rounds"]}, "round", "rounds")}, '
              f'{count_text({t["seeds"]}, "seed", "seeds")})', '',
              '| defence | ' + ' | '.join(f'attackers {f}' for f in t['fractions']) + ' |',
              '|---' * (len(t['fractions']) + 1) + '|']
    lines += _cell_rows(t['defences'], t['fractions'], t['cells'], t['best'])
    lines.append('')
  return lines
