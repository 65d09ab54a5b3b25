"""The report's privacy section: final G-mean by epsilon and resampler (a sweep over
--dp_noise_multipliers), as a table per setting and plots/gmean_vs_epsilon.png."""
import math
import os

import numpy as np

from fedar_jax import plot_style
from fedar_jax.report_axes import baseline
from fedar_jax.report_columns import count_text, setting_label, varying_settings
from fedar_jax.report_stats import TEST_NAME, interval95
from fedar_jax.report_tables import cell_tables, column_best, tested_table


def epsilon_tables(rows: list[dict], metric: str = 'gmean') -> list[dict]:
  """Final `metric` per resampler (rows) and noise multiplier (columns, with the epsilon
  spent by the final round), one table per other setting (imbalance ratio, ...); mean and
  sample std over every seed and data seed of the cell.

  Returns [{'setting': {column: value}, 'resamplers': [...], 'sigmas': [...],
  'epsilons': {sigma: float}, 'cells': {(resampler, sigma): (mean, std or None, n)},
  'best': {sigma: [resampler] or []}, 'not_separable': {sigma: [resamplers]},
  'rounds': int, 'seeds': int, 'ci95': {(resampler, sigma): 95% half width or nan},
  'order': [resamplers in sweep order]}] (best and not_separable:
  `report_tables.column_best`); [] for a sweep.csv without the DP columns.
  """
  if not rows or 'dp_noise_multiplier' not in rows[0] or 'epsilon' not in rows[0]:
    return []
  out = []
  for t in cell_tables(rows, 'resampler', 'dp_noise_multiplier', metric):
    best, tied = column_best(t['samples'], t['rows'], t['columns'])
    out.append({'setting': t['setting'], 'resamplers': t['rows'], 'sigmas': t['columns'],
                'epsilons': {r['dp_noise_multiplier']: float(r['epsilon']) for r in t['final']},
                'cells': t['cells'], 'best': best, 'not_separable': tied,
                'rounds': max(t['rounds']), 'seeds': t['seeds'],
                'ci95': {k: interval95(list(v.values()))[1] for k, v in t['samples'].items()},
                'order': list(dict.fromkeys(r['resampler'] for r in t['final']))})
  return out


def epsilon_label(epsilon: float) -> str:
  """'ε 3.21' or 'ε ∞' (no noise or no DP)."""
  return 'ε ∞' if math.isinf(epsilon) else f'ε {epsilon:.3g}'


def epsilon_table_markdown(tables: list[dict]) -> list[str]:
  """report.md lines: one resampler x noise multiplier (epsilon) table per setting."""
  lines = ['## G-mean by epsilon and resampler', '',
           'Final G-mean, mean ± sample std over seeds (and data seeds); a column per noise '
           'multiplier σ with the epsilon spent after the last round (at --dp_delta; ∞: no '
           f'noise); in bold the best per column where a {TEST_NAME} separates it from '
           'every other row; the columns where none does name, below the table, the rows '
           'not separable from the highest mean.', '']
  varying = varying_settings(tables)
  for t in tables:
    lines += tested_table(f'{setting_label(t["setting"], varying) or "all"} ('
                          f'{count_text({t["rounds"]}, "round", "rounds")}, '
                          f'{count_text({t["seeds"]}, "seed", "seeds")})', 'resampler', 'σ',
                          t['resamplers'], t['sigmas'], t,
                          [f'σ {s} ({epsilon_label(t["epsilons"][s])})' for s in t['sigmas']])
  return lines


def write_epsilon_plot(plot_dir: str, tables: list[dict]) -> str:
  """plots/gmean_vs_epsilon.png: final G-mean vs the epsilon spent (log scale, ticks at the
  epsilons), a line per resampler (mean, 95% CI band over seeds; the baseline `none`, else
  the first, black; colours in sweep order as in the other figures), a panel per setting
  (titled by the settings that vary between them, one y-scale); the no-noise value (σ 0,
  ε ∞) as a dotted line of the resampler's colour. Returns the path."""
  os.makedirs(plot_dir, exist_ok=True)
  order = list(dict.fromkeys(r for t in tables for r in t['order']))
  base = baseline('resampler', order)
  styles = {r: plot_style.series_style(i - (base in order[:i + 1]), r == base)
            for i, r in enumerate(order)}
  varying = varying_settings(tables)
  fig, axes = plot_style.figure(1, len(tables), max(6.5, 4.4 * len(tables)), 4.2)
  for ax, t in zip(axes.flat, tables):
    finite = [s for s in t['sigmas'] if not math.isinf(t['epsilons'][s])]
    for r in order:
      at = [s for s in finite if (r, s) in t['cells']]
      if at:
        x = [t['epsilons'][s] for s in at]
        mean = np.array([t['cells'][(r, s)][0] for s in at])
        label = f'{r} (baseline)' if r == base else r
        ax.plot(x, mean, label=label, **styles[r])
        plot_style.band(ax, x, mean, np.array([t['ci95'][(r, s)] for s in at]),
                        styles[r]['color'])
      for s in t['sigmas']:
        if (r, s) in t['cells'] and math.isinf(t['epsilons'][s]):
          ax.axhline(t['cells'][(r, s)][0], color=styles[r]['color'], linestyle=':',
                     linewidth=1.2)
    ax.set_xscale('log')
    ticks = sorted({t['epsilons'][s] for s in finite})
    ax.set_xticks(ticks, labels=[f'{e:.3g}' for e in ticks])
    ax.minorticks_off()
    ax.set_title(setting_label({k: v for k, v in t['setting'].items() if k in varying},
                               varying), fontsize=9)
    ax.yaxis.set_tick_params(labelleft=True)
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel('final G-mean')
  fig.supxlabel('epsilon after the last round (log scale)', fontsize=10)
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='outside right center', fontsize=8, title='resampler')
  t = tables[0]
  seeds = f'{t["seeds"]} seeds, band: 95% CI of the mean' if t['seeds'] > 1 else '1 seed'
  fig.suptitle(f'Final G-mean vs epsilon\n{t["rounds"]} rounds, {seeds}; dotted: no noise '
               '(σ 0)', fontsize=11)
  return plot_style.save_outside(fig, os.path.join(plot_dir, 'gmean_vs_epsilon.png'))
