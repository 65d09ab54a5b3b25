"""The report's privacy section: final G-mean by epsilon and resampler (a sweep over
--dp_noise_multipliers), as a table per setting and plots/gmean_vs_epsilon.png."""
import math
import os

import numpy as np

from fedar_jax import plot_style
from fedar_jax.report_columns import count_text, setting_label, varying_settings
from fedar_jax.report_tables import cell_rows, cell_tables


def epsilon_tables(rows: list[dict], metric: str = 'gmean') -> list[dict]:
  """Final `metric` per resampler (rows) and noise multiplier (columns, with the epsilon
  spent by the final round), one table per other setting (imbalance ratio, ...); mean and
  sample std over every seed and data seed of the cell.

  Returns [{'setting': {column: value}, 'resamplers': [...], 'sigmas': [...],
  'epsilons': {sigma: float}, 'cells': {(resampler, sigma): (mean, std or None, n)},
  'best': {sigma: [resamplers]}, 'rounds': int, 'seeds': int}]; [] for a sweep.csv
  without the DP columns.
  """
  if not rows or 'dp_noise_multiplier' not in rows[0] or 'epsilon' not in rows[0]:
    return []
  out = []
  for t in cell_tables(rows, 'resampler', 'dp_noise_multiplier', metric):
    cells = t['cells']
    best = {}
    for s in t['columns']:
      mine = [r for r in t['rows'] if (r, s) in cells]
      top = max(round(cells[(r, s)][0], 4) for r in mine)
      best[s] = [r for r in mine if round(cells[(r, s)][0], 4) == top]
    out.append({'setting': t['setting'], 'resamplers': t['rows'], 'sigmas': t['columns'],
                'epsilons': {r['dp_noise_multiplier']: float(r['epsilon']) for r in t['final']},
                'cells': cells, 'best': best, 'rounds': max(t['rounds']), 'seeds': t['seeds']})
  return out


def epsilon_label(epsilon: float) -> str:
  """'ε 3.21' or 'ε ∞' (no noise or no DP)."""
  return 'ε ∞' if math.isinf(epsilon) else f'ε {epsilon:.3g}'


def epsilon_table_markdown(tables: list[dict]) -> list[str]:
  """report.md lines: one resampler x noise multiplier (epsilon) table per setting."""
  lines = ['## G-mean by epsilon and resampler', '',
           'Final G-mean, mean ± sample std over seeds (and data seeds); a column per noise '
           'multiplier σ with the epsilon spent after the last round (at --dp_delta; ∞: no '
           'noise); the best per column in bold (ties at 4 decimals: all of them).', '']
  varying = varying_settings(tables)
  for t in tables:
    lines += [f'### {setting_label(t["setting"], varying) or "all"} ('
              f'{count_text({t["rounds"]}, "round", "rounds")}, '
              f'{count_text({t["seeds"]}, "seed", "seeds")})', '',
              '| resampler | ' + ' | '.join(f'σ {s} ({epsilon_label(t["epsilons"][s])})'
                                           for s in t['sigmas']) + ' |',
              '|---' * (len(t['sigmas']) + 1) + '|']
    lines += cell_rows(t['resamplers'], t['sigmas'], t['cells'], t['best'])
    lines.append('')
  return lines


def write_epsilon_plot(plot_dir: str, tables: list[dict]) -> str:
  """plots/gmean_vs_epsilon.png: final G-mean vs epsilon (log scale), a line per resampler
  (error bars: ± std), a panel per setting; the no-noise value (ε ∞) as a dotted line of
  the resampler's colour. Returns the path."""
  plt = plot_style.pyplot()
  os.makedirs(plot_dir, exist_ok=True)
  n = len(tables)
  fig, axes = plt.subplots(1, n, figsize=(5.6 * n, 4.4), squeeze=False, sharey=True)
  resamplers = list(dict.fromkeys(r for t in tables for r in t['resamplers']))
  varying = varying_settings(tables)
  for ax, t in zip(axes.flat, tables):
    for r in t['resamplers']:
      style = plot_style.line_style(resamplers.index(r))
      finite = [s for s in t['sigmas']
                if (r, s) in t['cells'] and not math.isinf(t['epsilons'][s])]
      ax.errorbar([t['epsilons'][s] for s in finite], [t['cells'][(r, s)][0] for s in finite],
                  yerr=[t['cells'][(r, s)][1] or 0.0 for s in finite], capsize=2, label=r,
                  **{**style, 'markersize': 4})
      for s in t['sigmas']:
        if (r, s) in t['cells'] and math.isinf(t['epsilons'][s]):
          ax.axhline(t['cells'][(r, s)][0], color=style.get('color'), linestyle=':',
                     linewidth=1)
    ax.set_xscale('log')
    ax.set_xlabel('epsilon after the last round (log scale; dotted: no noise)')
    ax.set_ylabel('final G-mean (mean ± std)')
    ax.grid(alpha=0.3)
    if n > 1:
      ax.set_title(setting_label(t['setting'], varying) or 'all', fontsize=10)
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='center left', bbox_to_anchor=(1.0, 0.5), fontsize=8,
             title='resampler')
  t = tables[0]
  fig.suptitle(f'Final G-mean vs epsilon ({t["rounds"]} rounds, {t["seeds"]} seeds)')
  fig.tight_layout()
  path = os.path.join(plot_dir, 'gmean_vs_epsilon.png')
  fig.savefig(path, dpi=plot_style.DPI, bbox_inches='tight')
  plt.close(fig)
  return path
