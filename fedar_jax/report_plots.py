"""The report's figures: a sweep's final G-mean against each swept number, its G-mean per
round and per-class recall (layout: report_axes), and a single run's metrics per round
(shared style: plot_style)."""
import json
import math
import os
import textwrap

import numpy as np

from fedar_jax import plot_style
from fedar_jax.report_axes import (MAX_LINES, SETTINGS, TEXT, Layout, baseline, coinciding,
                                   figure_name, final_rows, final_samples, label, layouts,
                                   panel_label, round_samples, values_of)
from fedar_jax.report_columns import MAX_PANELS, count_text, heading, read_rows
from fedar_jax.report_stats import interval95


def write_sweep_figures(plot_dir: str, columns: list[str], rows: list[dict]) -> tuple:
  """Writes a sweep's figures from its sweep.csv rows; returns (paths, notes), notes naming
  the figures left out (too many lines or panels) for report.md."""
  samples = final_samples(rows)
  if not samples:
    return [], []
  os.makedirs(plot_dir, exist_ok=True)
  plan = layouts(list(samples))
  paths, notes = [], []
  for layout in plan:
    paths.append(_final_figure(os.path.join(plot_dir, figure_name(layout)), layout, samples,
                               rows))
  series = plan[0] if plan else Layout(None, None, ())
  per_round = _series_layout(series)
  why = _too_many(per_round, samples)
  if why:
    notes.append(f'G-mean per round and per-class recall: left out ({why}); their numbers '
                 'are in the tables above and in `summary.csv`.')
  else:
    paths.append(_round_figure(os.path.join(plot_dir, 'gmean_per_round.png'), per_round,
                               rows))
    classes = [c[len('recall_'):] for c in columns if c.startswith('recall_')]
    if classes:
      paths.append(_recall_figure(os.path.join(plot_dir, 'recall_per_class.png'), per_round,
                                  rows, classes))
  _remove_stale(plot_dir, paths)
  return paths, notes


def _remove_stale(plot_dir: str, paths: list[str]) -> None:
  """Removes the sweep figures an earlier report wrote to plot_dir that this one did not
  (another layout, or left out now), so plots/ holds what report.md shows."""
  kept = {os.path.basename(p) for p in paths}
  for name in os.listdir(plot_dir):
    ours = (name.startswith(('gmean_vs_', 'gmean_by_')) and name.endswith('.png')
            or name in ('gmean_per_round.png', 'recall_per_class.png'))
    if ours and name not in kept:
      os.remove(os.path.join(plot_dir, name))


def _series_layout(layout: Layout) -> Layout:
  """The per-round figures' layout: the lines of `layout` (else its x) as lines, every
  other swept setting as panels."""
  lines = layout.lines or layout.x
  rest = tuple(c for c in (layout.x, layout.lines) + layout.panels if c and c != lines)
  return Layout(None, lines, rest)


def _too_many(layout: Layout, samples: dict) -> str:
  points = list(samples)
  n_lines = len(values_of(points, layout.lines)) if layout.lines else 1
  n_panels = len(_panels(points, layout.panels))
  if n_lines > MAX_LINES:
    return f'{n_lines} {heading(layout.lines)} values, more than {MAX_LINES} lines'
  if n_panels > MAX_PANELS:
    return f'{n_panels} panels, more than {MAX_PANELS}'
  return ''


def _panels(points, columns) -> list[tuple]:
  """The combinations of `columns` among `points`, each column in `values_of` order."""
  idx = [SETTINGS.index(c) for c in columns]
  order = [values_of(points, c) for c in columns]
  return sorted(dict.fromkeys(tuple(p[i] for i in idx) for p in points),
                key=lambda panel: tuple(o.index(v) for o, v in zip(order, panel)))


def _select(samples: dict, fixed: dict) -> list[dict]:
  """The replicate dicts of every point whose settings have the `fixed` values."""
  idx = {SETTINGS.index(c): v for c, v in fixed.items() if c is not None}
  return [reps for p, reps in samples.items() if all(p[i] == v for i, v in idx.items())]


def _pool(dicts: list[dict]) -> list[float]:
  return [v for d in dicts for v in d.values()]


def _stats(samples: dict, layout: Layout, line, panel, x) -> tuple | None:
  """(mean, 95% half width or nan, n) of the final G-mean of a line at x in a panel."""
  values = _pool(_select(samples, {layout.lines: line, layout.x: x,
                                   **dict(zip(layout.panels, panel))}))
  return (*interval95(values), len(values)) if values else None


def _seeds_text(samples: dict) -> str:
  n = {len(v) for v in samples.values()}
  return (count_text(n, 'seed', 'seeds') + (', band: 95% CI of the mean' if max(n) > 1
                                            else ''))


def _columns(n: int) -> int:
  """Grid columns for n panels: up to 3 (2 for 4), 4 from 10."""
  return 2 if n == 4 else min(n, 3) if n < 10 else 4


def _rounds_text(rows) -> str:
  return count_text({int(r['round']) for r in final_rows(rows)}, 'round', 'rounds')


def _groups(layout: Layout, lines: list, curves: dict) -> list[list]:
  """Coinciding lines merged, the baseline's group first."""
  groups = coinciding({line: curves[line] for line in lines})
  base = baseline(layout.lines, lines)
  return sorted(groups, key=lambda g: base not in g)


def _legend_label(layout: Layout, group: list, base) -> str:
  text = ' = '.join(v if layout.lines else 'all' for v in group)  # Titled by the column.
  return text + (' (baseline)' if base in group else '')


def _legend_height(entries: int) -> float:
  """Inches a figure needs for an outside legend of `entries` lines (and its title)."""
  return 1.6 + 0.26 * entries


def _line_grid(cells: int, groups: int):
  """(fig, axes) for `cells` line panels with an outside legend of `groups` entries."""
  cols = _columns(cells)
  n_rows = math.ceil(cells / cols)
  return plot_style.figure(n_rows, cols, max(6.5, 4.4 * cols),
                           max(3.6 * n_rows, _legend_height(groups)))


def _line_styles(groups: list[list], base) -> dict:
  """{first line of each group: its style}: the baseline's group black, the others in
  palette order."""
  first = base in groups[0]
  return {g[0]: plot_style.series_style(i - first, base in g) for i, g in enumerate(groups)}


def _mean_line(ax, x, stats: list[tuple], style: dict, label: str):
  """A line of the means of `stats` [(mean, 95% half width, ...)] at x, with its band."""
  mean = np.array([s[0] for s in stats])
  half = np.array([s[1] for s in stats])
  ax.plot(x, mean, label=label, **style)
  plot_style.band(ax, x, mean, half, style['color'])


def _finish_grid(axes, used: int, ylabel: str):
  """Hides the panels past the first `used`; labels the first column's y axes."""
  for ax in list(axes.flat)[used:]:
    ax.set_visible(False)
  for ax in axes[:, 0]:
    ax.set_ylabel(ylabel)


def _panel_ties(layout: Layout, drawn: list, curves: dict, panel, what: str = 'same curve'
                ) -> str:
  """'\nsame curve: smote = smote_tomek' for lines that coincide in this panel only ('all
  23' where more than 6 lines, every one drawn, do)."""
  mine = {line: {k: v for k, v in curves[line].items() if k[0] == panel} for line in drawn}
  ties = [g for g in coinciding({l: c for l, c in mine.items() if c}) if len(g) > 1]
  whole = {tuple(g) for g in coinciding({l: curves[l] for l in drawn})}
  ties = [g for g in ties if tuple(g) not in whole]
  name = heading(layout.lines) if layout.lines else ''
  # Wrapped where a panel (4.4 inches, 9 pt) ends; a break never separates '=' from the
  # value after it.
  texts = [f'{what}, {name}: ' + (f'all {len(g)}' if len(g) == len(drawn) > 6
                                   else ' =\u00a0'.join(g)) for g in ties]
  return ''.join('\n' + textwrap.fill(t, 56).replace('\u00a0', ' ') for t in texts)


def _x_axis(ax, layout: Layout, xs: list[str]):
  vals = [float(v) for v in xs]
  if len(vals) > 1 and min(vals) > 0 and max(vals) / min(vals) >= 10:
    ax.set_xscale('log')
  ax.set_xticks(vals, labels=xs)
  ax.minorticks_off()


_X_LABELS = {'threshold': 'FedAR threshold (resample iff client IR > threshold)',
             'imbalance_ratio': 'imbalance ratio (majority / minority per client)',
             'attacker_fraction': 'attacker fraction'}


def _final_figure(path: str, layout: Layout, samples: dict, rows: list[dict]) -> str:
  """Final G-mean vs layout.x: a line per layout.lines value (mean, 95% CI band), a panel
  per combination of layout.panels, one y-scale. More than MAX_LINES lines: a panel per
  line (with the baseline), or a ranked dot plot where those would be too many."""
  points = list(samples)
  lines = values_of(points, layout.lines) if layout.lines else [None]
  panels = _panels(points, layout.panels)
  xs = values_of(points, layout.x) if layout.x else [None]
  stats = {(line, panel, x): _stats(samples, layout, line, panel, x)
           for line in lines for panel in panels for x in xs}
  curves = {line: {(panel, x): s[0] for (l, panel, x), s in stats.items() if l == line and s}
            for line in lines}
  groups = _groups(layout, lines, curves)
  base = baseline(layout.lines, lines)
  what = f'vs {heading(layout.x)}' if layout.x else f'by {heading(layout.lines)}'
  title = (f'Final G-mean {what}'
           f'\n{_rounds_text(rows)}, {_seeds_text(samples)}')
  if layout.x is None or (len(groups) > MAX_LINES
                          and (len(groups) - 1) * len(panels) > MAX_PANELS):
    return _dot_figure(path, layout, groups, panels, xs, stats, curves, base, title)
  if len(groups) <= MAX_LINES:
    cells = [(panel, groups) for panel in panels]
  else:  # Small multiples: each line with the baseline, in every panel.
    first = groups[0] if base in groups[0] else None
    cells = [(panel, ([first] if first else []) + [g])
             for panel in panels for g in groups if g is not first]
  fig, axes = _line_grid(len(cells), len(groups))
  styles = _line_styles(groups, base)
  for ax, (panel, drawn) in zip(axes.flat, cells):
    for g in drawn:
      at = [x for x in xs if stats[(g[0], panel, x)]]
      if at:
        _mean_line(ax, [float(x) for x in at], [stats[(g[0], panel, x)] for x in at],
                   styles[g[0]], _legend_label(layout, g, base))
    _x_axis(ax, layout, xs)
    names = [panel_label(layout.panels, panel)]
    if len(groups) > MAX_LINES:
      names.append(' = '.join(drawn[-1]))
    same = _panel_ties(layout, [l for g in drawn for l in g], curves, panel)
    ax.set_title(', '.join(n for n in names if n) + same, fontsize=9)
    ax.yaxis.set_tick_params(labelleft=True)
    ax.grid(alpha=0.3)
  _finish_grid(axes, len(cells), 'final G-mean')
  fig.supxlabel(_X_LABELS.get(layout.x, heading(layout.x)), fontsize=10)
  if len(groups) <= MAX_LINES and (layout.lines or len(groups) > 1):
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='outside right center', fontsize=8,
               title=heading(layout.lines) if layout.lines else None)
  fig.suptitle(title + (f'; black: baseline {base}' if len(groups) > MAX_LINES and base else ''),
               fontsize=11)
  return plot_style.save_outside(fig, path)


def _dot_figure(path, layout, groups, panels, xs, stats, curves, base, title) -> str:
  """Ranked dot plot: a row per line (ranked by mean over x), a dot per x value (95% CI
  whiskers), a panel per combination of layout.panels, one x-scale."""
  cols = _columns(len(panels))
  n_rows = math.ceil(len(panels) / cols)
  fig, axes = plot_style.figure(n_rows, cols, 5.0 * cols,
                                (1.6 + 0.28 * len(groups)) * n_rows, sharey=False)
  for ax, panel in zip(axes.flat, panels):
    def score(g):
      means = [stats[(g[0], panel, x)][0] for x in xs if stats[(g[0], panel, x)]]
      return np.mean(means) if means else -np.inf
    ranked = sorted(groups, key=score)
    for j, x in enumerate(xs):
      ys, ms, hs = [], [], []
      for k, g in enumerate(ranked):
        s = stats[(g[0], panel, x)]
        if s:
          ys.append(k + 0.12 * (j - (len(xs) - 1) / 2))
          ms.append(s[0])
          hs.append(0.0 if not np.isfinite(s[1]) else s[1])
      style = plot_style.series_style(j)
      ax.errorbar(ms, ys, xerr=hs, fmt=style['marker'], color=style['color'], markersize=4,
                  capsize=2, linewidth=1, label=label(layout.x, x) if layout.x else 'final G-mean')
    ax.set_yticks(range(len(ranked)), labels=[' = '.join(g) for g in ranked], fontsize=8)
    for tick, g in zip(ax.get_yticklabels(), ranked):
      if base in g:
        tick.set_fontweight('bold')
    same = _panel_ties(layout, [l for g in groups for l in g], curves, panel, 'same values')
    ax.set_title(panel_label(layout.panels, panel) + same, fontsize=9)
    ax.set_xlabel('final G-mean')
    ax.grid(alpha=0.3, axis='x')
  for ax in list(axes.flat)[len(panels):]:
    ax.set_visible(False)
  shared = [a for a in axes.flat[:len(panels)]]
  lo = min(a.get_xlim()[0] for a in shared)
  hi = max(a.get_xlim()[1] for a in shared)
  for a in shared:
    a.set_xlim(lo, hi)
  if layout.x:
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='outside right center', fontsize=8)
  fig.suptitle(title.replace('band', 'whiskers') + '; ranked by mean'
               + (f'; bold: baseline {base}' if base else ''), fontsize=11)
  return plot_style.save_outside(fig, path)


def _round_figure(path: str, layout: Layout, rows: list[dict]) -> str:
  """G-mean per round: a line per layout.lines value (mean over seeds, 95% CI band), a
  panel per combination of layout.panels, one y-scale; coinciding lines drawn once."""
  per_round = round_samples(rows)
  points = list(per_round)
  lines = values_of(points, layout.lines) if layout.lines else [None]
  panels = _panels(points, layout.panels)
  curves, stats = {}, {}
  for line in lines:
    curves[line] = {}
    for panel in panels:
      chosen = _select(per_round, {layout.lines: line, **dict(zip(layout.panels, panel))})
      rounds = sorted({r for c in chosen for r in c})
      for r in rounds:
        s = interval95(_pool([c[r] for c in chosen if r in c]))
        stats[(line, panel, r)] = s
        curves[line][(panel, r)] = s[0]
  groups = _groups(layout, lines, curves)
  base = baseline(layout.lines, lines)
  fig, axes = _line_grid(len(panels), len(groups))
  styles = _line_styles(groups, base)
  from matplotlib.ticker import MaxNLocator
  for ax, panel in zip(axes.flat, panels):
    for g in groups:
      r = sorted(k for (l, p, k) in stats if l == g[0] and p == panel)
      if r:
        _mean_line(ax, r, [stats[(g[0], panel, k)] for k in r],
                   {**styles[g[0]], 'markevery': max(1, len(r) // 8)},
                   _legend_label(layout, g, base))
    same = _panel_ties(layout, [l for g in groups for l in g], curves, panel)
    ax.set_title(panel_label(layout.panels, panel) + same, fontsize=9)
    ax.set_xlabel('round')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_tick_params(labelleft=True)
    ax.grid(alpha=0.3)
  _finish_grid(axes, len(panels), 'G-mean')
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='outside right center', fontsize=8,
             title=heading(layout.lines) if layout.lines else None)
  fig.suptitle(f'G-mean per round, {_seeds_text(final_samples(rows))}', fontsize=11)
  return plot_style.save_outside(fig, path)


def _recall_figure(path: str, layout: Layout, rows: list[dict], classes: list[str]) -> str:
  """Final per-class recall: bars per class grouped by layout.lines value (95% CI
  whiskers), a panel per combination of layout.panels, y from 0 to 1."""
  per_class = {c: final_samples(rows, f'recall_{c}') for c in classes}
  points = list(per_class[classes[0]])
  lines = values_of(points, layout.lines) if layout.lines else [None]
  panels = _panels(points, layout.panels)
  cols = _columns(len(panels))
  n_rows = math.ceil(len(panels) / cols)
  fig, axes = plot_style.figure(n_rows, cols, max(4.4, 0.9 * len(lines)) * cols,
                                3.6 * n_rows)
  width = 0.8 / len(classes)
  for ax, panel in zip(axes.flat, panels):
    for j, c in enumerate(classes):
      means, halves = [], []
      for line in lines:
        values = _pool(_select(per_class[c], {layout.lines: line,
                                              **dict(zip(layout.panels, panel))}))
        mean, half = interval95(values) if values else (math.nan, math.nan)
        means.append(mean)
        halves.append(half if np.isfinite(half) else 0.0)
      ax.bar(np.arange(len(lines)) + (j - (len(classes) - 1) / 2) * width, means, width,
             yerr=halves if any(halves) else None, capsize=2, label=f'class {c}',
             color=plot_style.LINE_COLOURS[j % len(plot_style.LINE_COLOURS)])
    bare = layout.lines in TEXT
    ax.set_xticks(range(len(lines)), labels=[v or 'all' for v in lines], fontsize=8,
                  rotation=30 if bare and len(lines) > 2 else 0,
                  ha='right' if bare and len(lines) > 2 else 'center')
    ax.set_xlabel(heading(layout.lines) if layout.lines else '', fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_title(panel_label(layout.panels, panel), fontsize=9)
    ax.yaxis.set_tick_params(labelleft=True)
  _finish_grid(axes, len(panels), 'final recall')
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='outside right center', fontsize=8)
  fig.suptitle(f'Final per-class recall, '
               f'{_seeds_text(per_class[classes[0]]).replace("band", "whiskers")}', fontsize=11)
  return plot_style.save_outside(fig, path)


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
    # Columns equal every round (6 decimals) are one line: 'gmean = sensitivity = ...'.
    groups = coinciding({c: {i: float(row[c]) for i, row in enumerate(rows)} for c in cols})
    for i, g in enumerate(groups):
      ax.plot(r, [float(row[g[0]]) for row in rows], label=' = '.join(g),
              **plot_style.line_style(i, len(groups), len(r)))
    if ylabel in ('value', 'recall'):
      ax.set_ylim(max(lo - pad, -0.02), min(hi + pad, 1.02))
    if ylabel == 'clients':  # Counts: integer ticks from 0, also where every count is 0.
      top = max([float(row[c]) for row in rows for c in cols] + [1.0])
      ax.set_ylim(-0.04 * top, 1.06 * top)
      ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title=name, xlabel='round', ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if len(cols) > 1:
      ax.legend(fontsize=8, ncol=2 if len(groups) > 4 else 1)
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
