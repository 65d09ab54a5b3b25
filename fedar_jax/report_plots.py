"""The report's figures: a sweep's per-threshold, per-IR and per-attacker-fraction plots,
and a single run's metrics per round (shared style: plot_style)."""
import collections
import json
import os

import numpy as np

from fedar_jax import plot_style
from fedar_jax.report_columns import (BARE, KEY_COLUMNS, THRESHOLD, TIE_TOL, count_text, describe,
                                      heading, panel_of, read_rows, row_key, setting_label,
                                      sort_key, spread, too_many_panels, varying_settings)


def _panels(keys):
  """Panel label per summary key without its threshold (`panel_of`), in sorted order."""
  panels = sorted({panel_of(k) for k in keys}, key=sort_key)
  columns = panel_of(KEY_COLUMNS)
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


def write_plots(plot_dir: str, columns: list[str], rows: list[dict],
                summary: list[dict]) -> list[str]:
  """Writes the three PNG figures (none above MAX_PANELS settings); returns their paths."""
  if too_many_panels(summary):
    return []
  plt = plot_style.pyplot()
  from matplotlib.patches import Patch
  from matplotlib.ticker import MaxNLocator

  os.makedirs(plot_dir, exist_ok=True)
  panels, label = _panels([row_key(s) for s in summary])
  thresholds = sorted({s['threshold'] for s in summary}, key=float)
  classes = [c[len('recall_'):] for c in columns if c.startswith('recall_')]
  seeds = max(s['n_seeds'] for s in summary)
  title = describe(summary)
  paths = []

  # 1. Final G-mean vs threshold, a line per panel (imbalance ratio, ...).
  fig, ax = plt.subplots(figsize=(7.5, 4.8))
  for i, p in enumerate(panels):
    pts = [s for s in summary if panel_of(row_key(s)) == p]
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
  ax.set_ylabel(f'final G-mean ({spread(summary)})')
  ax.set_title(f'Final G-mean vs threshold\n{title}')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=9)
  paths.append(plot_style.save(fig, os.path.join(plot_dir, 'gmean_vs_threshold.png')))

  # 2. G-mean per round, a line per threshold, a panel per imbalance ratio (one y-scale).
  curves = collections.defaultdict(lambda: collections.defaultdict(list))
  for row in rows:
    curves[row_key(row)][int(row['round'])].append(float(row['gmean']))
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
           if panel_of(row_key(s)) == p}
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
    ax.set_ylabel(f'final recall ({spread(summary)})')
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
      ax.set_title(setting_label(t['setting'], varying_settings(tables)), fontsize=10)
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='center left', bbox_to_anchor=(1.0, 0.5), fontsize=8,
             title='resampler', ncol=1 if len(labels) <= 16 else 2)
  t = tables[0]
  fig.suptitle(f'Final G-mean vs imbalance ratio ({t["rounds"]} rounds, {t["seeds"]} seeds)'
               + (f'\n{setting_label(t["setting"])}' if len(tables) == 1 else ''))
  fig.tight_layout()
  path = os.path.join(plot_dir, 'gmean_vs_ir.png')
  fig.savefig(path, dpi=plot_style.DPI, bbox_inches='tight')  # Keeps the outside legend.
  plt.close(fig)
  return path


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
               f'{count_text({t["rounds"] for t in tables}, "round", "rounds")}, '
               f'{count_text({t["seeds"] for t in tables}, "seed", "seeds")})')
  fig.tight_layout()
  path = os.path.join(plot_dir, 'gmean_vs_attackers.png')
  fig.savefig(path, dpi=plot_style.DPI, bbox_inches='tight')  # Keeps the outside legend.
  plt.close(fig)
  return path


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
