"""Reports: `python -m fedar_jax.report --workdir=DIR` (or `fedar-report`) (re)writes,
from a sweep's DIR/sweep.csv,

  DIR/summary.csv   final-round metrics per sweep point: mean and sample std (ddof=1;
                    empty for one seed) over seeds, keyed by every setting column of
                    sweep.csv but the seed (KEY_COLUMNS, from sweep_axes.SETTING_COLUMNS;
                    a column an older sweep.csv lacks reads as '')
  DIR/plots/gmean_vs_threshold.png   final G-mean vs threshold, a line per imbalance ratio
  DIR/plots/gmean_per_round.png      G-mean per round, a line per threshold (band: ± std), a panel per IR
  DIR/plots/recall_per_class.png     final per-class recall bars per threshold, a panel per IR
  DIR/plots/gmean_vs_ir.png          final G-mean vs imbalance ratio, a line per resampler
                                     (sweeps over two or more ratios)
  DIR/plots/gmean_vs_attackers.png   final G-mean vs attacker fraction, a line per defence,
                                     a panel per attack (sweeps over two or more fractions)
  DIR/report.md     the tables (thresholds tied at the best G-mean named together; the
                    paper's resampler x imbalance ratio table; the defence x attacker
                    fraction table per attack) and the plots

and from a single run's DIR/metrics.csv, DIR/plots/metrics_per_round.png (every
metric per round). Figures share `plot_style` (palette, line styles, 150 dpi).
"""
import collections
import csv
import json
import os
import sys

import numpy as np

from fedar_jax import plot_style
from fedar_jax import sweep_axes

# A summary row's key: every setting column of sweep.csv but the seed (averaged over).
KEY_COLUMNS = tuple(c for c in sweep_axes.SETTING_COLUMNS if c != 'seed')
THRESHOLD = KEY_COLUMNS.index('threshold')
# The key columns report.md's tables always show (those of the first sweeps); the others
# only where they vary.
SHOWN_KEYS = ('imbalance_ratio', 'resampler', 'threshold', 'learning_rate', 'data_seed',
              'attacker_fraction')
# sweep.csv columns that are settings or bookkeeping, not metrics.
NOT_METRICS = sweep_axes.SETTING_COLUMNS + ('round', 'round_s')
# Short names of the setting columns in tables and figure labels (default: the column
# with spaces); code values (resampler, aggregator, ...) are shown bare in labels.
HEADINGS = {'imbalance_ratio': 'IR', 'learning_rate': 'lr', 'attacker_fraction': 'attackers',
            'server_learning_rate': 'server lr'}
BARE = ('resampler', 'server_optimizer', 'aggregator', 'loss', 'client_optimizer', 'attack',
        'defence')
# sweep.csv holds 6 decimals: values that agree there are tied.
TIE_TOL = 5e-7


def read_rows(path: str) -> tuple[list[str], list[dict]]:
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    return list(reader.fieldnames), list(reader)


def _key(row) -> tuple:
  # Workdirs from before a setting column existed lack it: it reads as ''.
  return tuple(row.get(k, '') for k in KEY_COLUMNS)


def heading(column: str) -> str:
  """A setting column's short name ('IR', 'lr', 'data seed', 'trim fraction')."""
  return HEADINGS.get(column, column.replace('_', ' '))


def shown_keys(summary: list[dict]) -> list[str]:
  """The key columns report.md's tables show: SHOWN_KEYS and every other key column
  that varies across the summary."""
  return [c for c in KEY_COLUMNS
          if c in SHOWN_KEYS or len({s.get(c, '') for s in summary}) > 1]


def _sort_value(value: str):
  try:
    return (0, float(value), '')
  except ValueError:
    return (1, 0.0, value)


def _sort_key(key) -> tuple:
  return tuple(_sort_value(v) for v in key)


def _panel(key) -> tuple:
  """A summary key without its threshold: what one line / panel of the plots shows."""
  return key[:THRESHOLD] + key[THRESHOLD + 1:]


def summarize(columns: list[str], rows: list[dict]) -> tuple[list[str], list[dict]]:
  """Final-round metrics per point (KEY_COLUMNS), mean and std over seeds.

  Returns (header, rows) for summary.csv; values are floats (std None for one seed).
  """
  metric_cols = [c for c in columns if c not in NOT_METRICS]
  final = {}
  for row in rows:
    point = _key(row) + (row['seed'],)
    if point not in final or int(row['round']) > int(final[point]['round']):
      final[point] = row
  by_key = collections.defaultdict(list)
  for point, row in final.items():
    by_key[point[:-1]].append(row)
  header = list(KEY_COLUMNS) + ['n_seeds', 'rounds'] + [
      f'{m}_{stat}' for m in metric_cols for stat in ('mean', 'std')]
  out = []
  for key in sorted(by_key, key=_sort_key):
    group = by_key[key]
    entry = dict(zip(KEY_COLUMNS, key))
    entry['n_seeds'] = len(group)
    entry['rounds'] = min(int(r['round']) for r in group)
    for m in metric_cols:
      values = np.array([float(r[m]) for r in group])
      entry[f'{m}_mean'] = float(values.mean())
      entry[f'{m}_std'] = float(values.std(ddof=1)) if len(values) > 1 else None
    out.append(entry)
  return header, out


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


def _panels(keys):
  """Panel label per summary key without its threshold (`_panel`), in sorted order."""
  panels = sorted({_panel(k) for k in keys}, key=_sort_key)
  columns = _panel(KEY_COLUMNS)
  varies = [len({p[i] for p in panels}) > 1 for i in range(len(columns))]

  def label(p):
    parts = [f'IR {p[0]}']
    parts += [p[i] if columns[i] in BARE else f'{heading(columns[i])} {p[i]}'
              for i in range(1, len(p)) if varies[i]]
    return ', '.join(parts)
  return panels, label


def _grid(plt, n, sharey=True):
  cols = min(3, n)
  rows = (n + cols - 1) // cols
  fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), squeeze=False,
                           sharey=sharey)
  for ax in axes.flat[n:]:
    ax.set_visible(False)
  return fig, axes.flat


def _count(values, one: str, many: str) -> str:
  """'20 rounds', '1 seed', '5-20 rounds' from a collection of ints."""
  lo, hi = min(values), max(values)
  n = f'{lo}' if lo == hi else f'{lo}-{hi}'
  return f'{n} {one if hi == 1 else many}'


def describe(summary: list[dict]) -> str:
  """'resampler smote, 20 rounds, 3 seeds': the figure-title suffix of a sweep."""
  resamplers = sorted({s['resampler'] for s in summary})
  return (f'resampler{"s" if len(resamplers) > 1 else ""} {", ".join(resamplers)}, '
          f'{_count({s["rounds"] for s in summary}, "round", "rounds")}, '
          f'{_count({s["n_seeds"] for s in summary}, "seed", "seeds")}')


def _spread(summary: list[dict]) -> str:
  seeds = max(s['n_seeds'] for s in summary)
  return f'mean ± std over {seeds} seeds' if seeds > 1 else '1 seed'


# The per-setting figures (a line or a panel per setting) are left out above this many
# settings: a 90-panel grid is 2340 x 17550 pixels and a 90-line legend unreadable.
MAX_PANELS = 24


def too_many_panels(summary: list[dict]) -> int:
  """The number of settings (lines / panels) of the per-setting figures when it exceeds
  MAX_PANELS, else 0."""
  n = len({_panel(_key(s)) for s in summary})
  return n if n > MAX_PANELS else 0


def write_plots(plot_dir: str, columns: list[str], rows: list[dict],
                summary: list[dict]) -> list[str]:
  """Writes the three PNG figures (none above MAX_PANELS settings); returns their paths."""
  if too_many_panels(summary):
    return []
  plt = plot_style.pyplot()
  from matplotlib.patches import Patch
  from matplotlib.ticker import MaxNLocator

  os.makedirs(plot_dir, exist_ok=True)
  panels, label = _panels([_key(s) for s in summary])
  thresholds = sorted({s['threshold'] for s in summary}, key=float)
  classes = [c[len('recall_'):] for c in columns if c.startswith('recall_')]
  seeds = max(s['n_seeds'] for s in summary)
  title = describe(summary)
  paths = []

  # 1. Final G-mean vs threshold, a line per panel (imbalance ratio, ...).
  fig, ax = plt.subplots(figsize=(7.5, 4.8))
  for i, p in enumerate(panels):
    pts = [s for s in summary if _panel(_key(s)) == p]
    pts.sort(key=lambda s: float(s['threshold']))
    dodge = 10 ** (0.01 * (i - (len(panels) - 1) / 2))  # Keeps error bars apart (log x).
    x = [float(s['threshold']) * dodge for s in pts]
    style = plot_style.line_style(i, len(panels), len(pts))
    yerr = [s['gmean_std'] for s in pts] if seeds > 1 else None
    ax.errorbar(x, [s['gmean_mean'] for s in pts], yerr=yerr, capsize=3, label=label(p),
                zorder=3 + len(panels) - i, **style)
  ax.set_xscale('log')
  ax.set_xticks([float(t) for t in thresholds], labels=thresholds)
  ax.minorticks_off()
  ax.set_xlabel('FedAR threshold (resample iff client IR > threshold)')
  ax.set_ylabel(f'final G-mean ({_spread(summary)})')
  ax.set_title(f'Final G-mean vs threshold\n{title}')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=9)
  paths.append(plot_style.save(fig, os.path.join(plot_dir, 'gmean_vs_threshold.png')))

  # 2. G-mean per round, a line per threshold, a panel per imbalance ratio (one y-scale).
  curves = collections.defaultdict(lambda: collections.defaultdict(list))
  for row in rows:
    curves[_key(row)][int(row['round'])].append(float(row['gmean']))
  fig, axes = _grid(plt, len(panels))
  for ax, p in zip(axes, panels):
    means = {}
    for t in thresholds:
      per_round = curves.get(p[:THRESHOLD] + (t,) + p[THRESHOLD:])
      if per_round:
        r = sorted(per_round)
        means[t] = (r, np.array([np.mean(per_round[k]) for k in r]),
                    np.array([np.std(per_round[k], ddof=1) if len(per_round[k]) > 1 else 0.0
                              for k in r]))
    ties = _tied_curves(means)
    repeats = {t for g in ties for t in g[1:]}  # Their band is drawn once, by g[0].
    for i, t in enumerate(thresholds):
      if t not in means:
        continue
      r, mean, std = means[t]
      style = plot_style.line_style(i, len(thresholds), len(r))
      ax.plot(r, mean, label=f'threshold {t}', zorder=3 + len(thresholds) - i, **style)
      if seeds > 1 and t not in repeats:
        ax.fill_between(r, mean - std, mean + std, color=style['color'],
                        alpha=plot_style.BAND_ALPHA, linewidth=0)
    handles, labels = ax.get_legend_handles_labels()
    if seeds > 1:
      handles.append(Patch(color='0.5', alpha=plot_style.BAND_ALPHA * 2))
      labels.append(f'band: ± 1 std over {seeds} seeds')
    tied = {f'threshold {t}' for g in ties for t in g}
    labels = [f'{lab} (tied)' if lab in tied else lab for lab in labels]
    ax.legend(handles, labels, fontsize=8)
    ax.set_title(label(p) + (''.join(f'\nthresholds {", ".join(g)}: identical curves'
                                     for g in ties)), fontsize=10)
    ax.set_xlabel('round')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel('G-mean' + (f' (mean over {seeds} seeds)' if seeds > 1 else ''))
    ax.yaxis.set_tick_params(labelleft=True)
    ax.grid(alpha=0.3)
  fig.suptitle(f'G-mean per round, {title}')
  paths.append(plot_style.save(fig, os.path.join(plot_dir, 'gmean_per_round.png')))

  # 3. Final per-class recall, bars per class grouped by threshold, a panel per IR.
  fig, axes = _grid(plt, len(panels))
  width = 0.8 / max(len(classes), 1)
  for ax, p in zip(axes, panels):
    pts = {s['threshold']: s for s in summary
           if _panel(_key(s)) == p}
    ts = [t for t in thresholds if t in pts]
    x = np.arange(len(ts))
    for j, c in enumerate(classes):
      yerr = [pts[t][f'recall_{c}_std'] for t in ts] if seeds > 1 else None
      ax.bar(x + (j - (len(classes) - 1) / 2) * width,
             [pts[t][f'recall_{c}_mean'] for t in ts], width, yerr=yerr, capsize=2,
             color=plot_style.PALETTE[j % len(plot_style.PALETTE)], label=f'class {c}')
    ax.set_xticks(x, labels=ts)
    ax.set_ylim(0, 1.05)
    ax.set_title(label(p), fontsize=10)
    ax.set_xlabel('threshold')
    ax.set_ylabel(f'final recall ({_spread(summary)})')
    ax.yaxis.set_tick_params(labelleft=True)
    ax.legend(fontsize=8)
  fig.suptitle(f'Final per-class recall, {title}')
  paths.append(plot_style.save(fig, os.path.join(plot_dir, 'recall_per_class.png')))
  return paths


def _tied_curves(means: dict) -> list[list]:
  """Thresholds whose mean curves (rounds, values) agree at every round within TIE_TOL."""
  groups = []
  for t, (r, mean, _) in means.items():
    for g in groups:
      r0, mean0, _ = means[g[0]]
      if r0 == r and np.all(np.abs(mean0 - mean) <= TIE_TOL):
        g.append(t)
        break
    else:
      groups.append([t])
  return [g for g in groups if len(g) > 1]


def _pm(row, metric) -> str:
  std = row[f'{metric}_std']
  return f'{row[f"{metric}_mean"]:.4f}' + (f' ± {std:.4f}' if std is not None else '')


def best_thresholds(summary: list[dict], metric: str = 'gmean') -> dict:
  """A summary key without its threshold (`_panel`) -> (best summary row, thresholds tied
  at the best final `metric` mean within TIE_TOL, in summary order)."""
  by_panel = collections.defaultdict(list)
  for s in summary:
    by_panel[_panel(_key(s))].append(s)
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
           f'{_spread(summary).replace("std", "sample std")} (from `sweep.csv`; all '
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
  for setting in sorted(tables, key=_sort_key):
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
    point = tuple(row.get(k, '') for k in sweep_axes.SETTING_COLUMNS)
    if point not in final or int(row['round']) > int(final[point]['round']):
      final[point] = row
  return list(final.values())


def _setting_label(setting: dict, varying=()) -> str:
  """'threshold 1.5, learning rate 0.001, median': the table's settings (threshold,
  learning rate and attacker fraction always, the other columns in `varying`)."""
  names = {'threshold': 'threshold', 'learning_rate': 'learning rate',
           'attacker_fraction': 'attacker fraction'}
  return ', '.join(v if k in BARE else f'{names.get(k, heading(k))} {v}'
                   for k, v in setting.items()
                   if v != '' and (k in names or k in varying))


def _varying(tables: list[dict]) -> set:
  """The setting columns whose value differs between tables."""
  return {k for k in tables[0]['setting'] if len({t['setting'][k] for t in tables}) > 1}


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
  varying = _varying(tables)
  for t in tables:
    lines += [f'### {_setting_label(t["setting"], varying)} ({t["rounds"]} rounds, '
              f'{t["seeds"]} seeds)', '',
              '| resampler | ' + ' | '.join(f'IR {ir}' for ir in t['ratios']) + ' |',
              '|---' * (len(t['ratios']) + 1) + '|']
    lines += _cell_rows(t['resamplers'], t['ratios'], t['cells'], t['best'])
    ties = [f'IR {ir}: {", ".join(b)}' for ir, b in t['best'].items() if len(b) > 1]
    if ties:
      lines += ['', 'Ties for best: ' + '; '.join(ties) + '.']
    lines.append('')
  return lines


def write_ir_plot(plot_dir: str, tables: list[dict]) -> str:
  """plots/gmean_vs_ir.png: final G-mean vs imbalance ratio, a line per resampler
  (error bars: ± std), a panel per setting; returns the path."""
  plt = plot_style.pyplot()

  os.makedirs(plot_dir, exist_ok=True)
  if len(tables) == 1:
    fig, ax = plt.subplots(figsize=(8, 5))
    axes = [ax]
  else:
    fig, flat = _grid(plt, len(tables))
    axes = list(flat)
  for ax, t in zip(axes, tables):
    for i, r in enumerate(t['resamplers']):
      ratios = [ir for ir in t['ratios'] if (r, ir) in t['cells']]
      mean = [t['cells'][(r, ir)][0] for ir in ratios]
      std = [t['cells'][(r, ir)][1] or 0.0 for ir in ratios]
      ax.errorbar([float(ir) for ir in ratios], mean, yerr=std, capsize=2, label=r,
                  **{**plot_style.line_style(i), 'markersize': 4})
    ax.set_xticks([float(ir) for ir in t['ratios']], labels=t['ratios'])
    ax.set_xlabel('imbalance ratio (majority / minority per client)')
    ax.set_ylabel('final G-mean (mean ± std)')
    ax.grid(alpha=0.3)
    if len(tables) > 1:
      ax.set_title(_setting_label(t['setting'], _varying(tables)), fontsize=10)
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='center left', bbox_to_anchor=(1.0, 0.5), fontsize=8,
             title='resampler', ncol=1 if len(labels) <= 16 else 2)
  t = tables[0]
  fig.suptitle(f'Final G-mean vs imbalance ratio ({t["rounds"]} rounds, {t["seeds"]} seeds)'
               + (f'\n{_setting_label(t["setting"])}' if len(tables) == 1 else ''))
  fig.tight_layout()
  path = os.path.join(plot_dir, 'gmean_vs_ir.png')
  fig.savefig(path, dpi=plot_style.DPI, bbox_inches='tight')  # Keeps the outside legend.
  plt.close(fig)
  return path


# Setting columns an attack table spreads over its columns and panels, or averages over.
_ATTACK_AXES = ('attacker_fraction', 'attack', 'data_seed')


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
  other = [c for c in KEY_COLUMNS if c not in _ATTACK_AXES]
  keys = list(dict.fromkeys(tuple(r.get(c, '') for c in other) for r in final))
  varying = [i for i, c in enumerate(other) if len({k[i] for k in keys}) > 1]
  named = other.index('defence')
  set_by_defences = {f for k in keys if k[named] for f in _defence_fields(k[named])}

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
    fractions = sorted({f for _, f in mine}, key=_sort_value)
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


def _defence_fields(name: str) -> tuple:
  from fedar_jax import defences  # No JAX.
  return tuple(defences.flags_of(name)) if name in defences.DEFENCES else ()


def attack_table_markdown(tables: list[dict]) -> list[str]:
  """report.md lines: one defence x attacker fraction table of final G-mean per attack."""
  lines = ['## Final G-mean by defence and attacker fraction', '',
           'Mean ± sample std over seeds (and data seeds); the best per column in bold '
           '(ties at 4 decimals: all of them).', '']
  for t in tables:
    lines += [f'### attack {t["attack"] or "(default)"} ('
              f'{_count({t["rounds"]}, "round", "rounds")}, '
              f'{_count({t["seeds"]}, "seed", "seeds")})', '',
              '| defence | ' + ' | '.join(f'attackers {f}' for f in t['fractions']) + ' |',
              '|---' * (len(t['fractions']) + 1) + '|']
    lines += _cell_rows(t['defences'], t['fractions'], t['cells'], t['best'])
    lines.append('')
  return lines


def write_attack_plot(plot_dir: str, tables: list[dict]) -> str:
  """plots/gmean_vs_attackers.png: final G-mean vs attacker fraction, a line per
  defence (error bars: ± std), a panel per attack, one y-scale; returns the path."""
  plt = plot_style.pyplot()
  os.makedirs(plot_dir, exist_ok=True)
  fig, axes = plt.subplots(1, len(tables), figsize=(5.6 * len(tables), 4.4), squeeze=False,
                           sharey=True)
  defences = list(dict.fromkeys(d for t in tables for d in t['defences']))
  for ax, t in zip(axes[0], tables):
    for i, d in enumerate(defences):
      fractions = [f for f in t['fractions'] if (d, f) in t['cells']]
      if not fractions:
        continue
      mean = [t['cells'][(d, f)][0] for f in fractions]
      std = [t['cells'][(d, f)][1] or 0.0 for f in fractions]
      dodge = 0.004 * (i - (len(defences) - 1) / 2)  # Keeps error bars apart.
      ax.errorbar([float(f) + dodge for f in fractions], mean, yerr=std, capsize=2, label=d,
                  **{**plot_style.line_style(i), 'markersize': 5})
    ax.set_xticks([float(f) for f in t['fractions']], labels=t['fractions'])
    ax.set_xlabel('attacker fraction')
    ax.set_title(f'attack: {t["attack"] or "(default)"}', fontsize=10)
    ax.yaxis.set_tick_params(labelleft=True)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel('final G-mean (mean ± std)' if tables[0]['seeds'] > 1
                        else 'final G-mean')
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='center left', bbox_to_anchor=(1.0, 0.5), fontsize=8,
             title='defence')
  fig.suptitle(f'Final G-mean vs attacker fraction ('
               f'{_count({t["rounds"] for t in tables}, "round", "rounds")}, '
               f'{_count({t["seeds"] for t in tables}, "seed", "seeds")})')
  fig.tight_layout()
  path = os.path.join(plot_dir, 'gmean_vs_attackers.png')
  fig.savefig(path, dpi=plot_style.DPI, bbox_inches='tight')  # Keeps the outside legend.
  plt.close(fig)
  return path


def write_report(workdir: str) -> list[str]:
  """Writes summary.csv, the plots and report.md from `workdir/sweep.csv`; returns the paths.

  Raises FileNotFoundError if there is no sweep.csv, ValueError if it has no rows.
  """
  columns, rows = read_rows(os.path.join(workdir, 'sweep.csv'))
  if not rows:
    raise ValueError(f'{os.path.join(workdir, "sweep.csv")} has no rows yet')
  header, summary = summarize(columns, rows)
  summary_path = os.path.join(workdir, 'summary.csv')
  write_summary(summary_path, header, summary)
  plots = write_plots(os.path.join(workdir, 'plots'), columns, rows, summary)
  sections = []
  tables = ir_tables(rows)
  if any(len(t['ratios']) > 1 for t in tables):
    plots.append(write_ir_plot(os.path.join(workdir, 'plots'), tables))
    sections = ir_table_markdown(tables)
  attacks = attack_tables(rows)
  if any(len(t['fractions']) > 1 for t in attacks):
    plots.append(write_attack_plot(os.path.join(workdir, 'plots'), attacks))
    sections = list(sections) + attack_table_markdown(attacks)
  report_path = os.path.join(workdir, 'report.md')
  write_markdown(report_path, columns, summary, plots, sections)
  return [summary_path, *plots, report_path]


def write_run_plot(workdir: str) -> str:
  """Writes DIR/plots/metrics_per_round.png from a single run's DIR/metrics.csv: the
  balanced-test metrics, the per-class recall, the training loss and the client counts
  per round (title from DIR/config.json where present). Returns the path.

  Raises FileNotFoundError if there is no metrics.csv, ValueError if it has no rows.
  """
  columns, rows = read_rows(os.path.join(workdir, 'metrics.csv'))
  if not rows:
    raise ValueError(f'{os.path.join(workdir, "metrics.csv")} has no rows yet')
  plt = plot_style.pyplot()
  from matplotlib.ticker import MaxNLocator
  recalls = [c for c in columns if c.startswith('recall_')]
  metric_cols = columns[1:columns.index(recalls[0])] if recalls else []
  counts = [c for c in ('resampled_clients', 'dropped_clients', 'fallback_clients')
            if c in columns]
  r = [int(row['round']) for row in rows]
  panels = [('balanced-test metrics', metric_cols, 'value'),
            ('per-class recall', recalls, 'recall'),
            ('mean local training loss', ['train_loss'], 'loss'),
            ('clients per round', counts, 'clients')]
  # The metrics and recall panels share one y-range, fitted to both.
  shared = [float(row[c]) for row in rows for c in metric_cols + recalls]
  lo, hi = (min(shared), max(shared)) if shared else (0.0, 1.0)
  pad = max(0.05 * (hi - lo), 0.01)
  fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
  for ax, (name, cols, ylabel) in zip(axes.flat, panels):
    for i, c in enumerate(cols):
      ax.plot(r, [float(row[c]) for row in rows], label=c, **plot_style.line_style(
          i, len(cols), len(r)))
    if ylabel in ('value', 'recall'):
      ax.set_ylim(max(lo - pad, -0.02), min(hi + pad, 1.02))
    ax.set(title=name, xlabel='round', ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if len(cols) > 1:
      ax.legend(fontsize=8, ncol=2 if len(cols) > 4 else 1)
  fig.suptitle(run_title(workdir, r[-1]))
  os.makedirs(os.path.join(workdir, 'plots'), exist_ok=True)
  return plot_style.save(fig, os.path.join(workdir, 'plots', 'metrics_per_round.png'))


def run_title(workdir: str, rounds: int) -> str:
  """'smote, threshold 1.5, IR 10, 10 clients, 20 rounds, seed 0' from DIR/config.json."""
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      c = json.load(f)
  except (OSError, ValueError):
    return f'{rounds} rounds'
  return (f'{c["resampler"]}, threshold {c["threshold"]:g}, IR {c["imbalance_ratio"]:g}, '
          f'{c["dataset"]}, {c["num_clients"]} clients, {rounds} rounds, seed {c["seed"]}')


def main(argv=None):
  """`python -m fedar_jax.report --workdir=DIR`, the console script `fedar-report`."""
  from absl import flags
  argv = sys.argv if argv is None else argv
  flag_values = flags.FlagValues()
  flags.DEFINE_string('workdir', None, 'A sweep workdir (holding sweep.csv) or a single '
                      "run's workdir (holding metrics.csv).", flag_values=flag_values)
  if any(a in ('-h', '-help', '--help', '--helpshort', '--helpfull') for a in argv[1:]):
    from fedar_jax.cli import print_quietly  # `| head` ends it quietly.
    print_quietly(f'{__doc__.strip()}\n\nflags:\n  --workdir: {flag_values["workdir"].help}')
    return
  try:
    flag_values(argv)
    if not flag_values.workdir:
      raise ValueError('--workdir: is required')
    sweep, run = (os.path.join(flag_values.workdir, n) for n in ('sweep.csv', 'metrics.csv'))
    if os.path.isfile(sweep):
      outputs = write_report(flag_values.workdir)
    elif os.path.isfile(run):
      outputs = [write_run_plot(flag_values.workdir)]
    else:
      raise ValueError(f'--workdir: neither {sweep} nor {run} exists (run fedar_jax.sweep '
                       'or fedar_jax.main first)')
  except (flags.Error, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(f"wrote {', '.join(outputs)}")


if __name__ == '__main__':
  main()
