"""Several workdirs (runs or sweeps) in one report: `fedar-report --workdir=A --workdir=B
--out=DIR` writes DIR/report.md and DIR/plots/ (the figures of `report_plots` with the
input, 'run', as the lines: one y-scale for all, per-round curves overlaid) and
DIR/compared.csv (final metrics per input and setting, mean and 95% interval over seeds).

An input is named by its folder name (by the path as given where two share one). A run's
settings come from its config.json; a sweep's from its sweep.csv.
"""
import collections
import csv
import json
import math
import os

from fedar_jax import sweep_axes
from fedar_jax.report_axes import REPLICATES, SETTINGS, label, settings_of, swept
from fedar_jax.report_columns import heading, identical_groups, read_rows
from fedar_jax.report_plots import write_sweep_figures
from fedar_jax.report_stats import interval95

# The final metrics compared.csv and report.md show, in order.
COMPARED = ('gmean', 'f1', 'sensitivity', 'specificity', 'precision', 'accuracy')


def labels(workdirs: list[str]) -> list[str]:
  """Each workdir's name in the report: its folder name, or the path as given where two
  inputs share a folder name."""
  names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  return [n if names.count(n) == 1 else w for n, w in zip(names, workdirs)]


def input_rows(workdir: str, label: str) -> tuple[str, list[str], list[dict]]:
  """(kind 'sweep' or 'run', header, rows) of one input, every row with 'run' = label; a
  run's rows get its setting columns and seed from DIR/config.json ('' where absent).

  Raises ValueError naming the workdir when it holds neither sweep.csv nor metrics.csv,
  or the file has no rows.
  """
  sweep, run = (os.path.join(workdir, n) for n in ('sweep.csv', 'metrics.csv'))
  if os.path.isfile(sweep):
    kind, (header, rows) = 'sweep', read_rows(sweep)
  elif os.path.isfile(run):
    kind, (header, rows) = 'run', read_rows(run)
    config = _config(workdir)
    fixed = {c: sweep_axes.format_value(config[c]) if c in config else ''
             for c in sweep_axes.SETTING_COLUMNS}
    rows = [{**fixed, **r} for r in rows]
  else:
    raise ValueError(f'--workdir: neither {sweep} nor {run} exists (run fedar_jax.sweep or '
                     'fedar_jax.main first)')
  if not rows:
    raise ValueError(f'--workdir: {sweep if kind == "sweep" else run} has no rows yet')
  return kind, header, [{**r, 'run': label} for r in rows]


def _config(workdir: str) -> dict:
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def check_out(out: str, workdirs: list[str]) -> None:
  """Raises ValueError where --out is one of the inputs (its own report.md and plots would
  be overwritten by the comparison); a folder inside an input is allowed."""
  real = os.path.realpath(out)
  for w in workdirs:
    if os.path.realpath(w) == real:
      raise ValueError(f'--out: {out} is the input --workdir={w}; the comparison would '
                       'overwrite its report (name another folder, e.g. a new one)')


def write_comparison(workdirs: list[str], out: str) -> list[str]:
  """Writes DIR/report.md, DIR/compared.csv and DIR/plots/ comparing `workdirs` (runs or
  sweeps) into `out`; returns the paths."""
  check_out(out, workdirs)
  kinds, rows, headers = [], [], []
  for w, name in zip(workdirs, labels(workdirs)):
    kind, header, mine = input_rows(w, name)
    kinds.append(kind)
    headers.append(header)
    rows += mine
  # Metric columns every input has (datasets may differ in their classes).
  columns = [c for c in headers[0] if all(c in h for h in headers[1:])]
  os.makedirs(out, exist_ok=True)
  plots, notes = write_sweep_figures(os.path.join(out, 'plots'), columns, rows)
  table = final_table(rows)
  csv_path = os.path.join(out, 'compared.csv')
  write_table(csv_path, table)
  report_path = os.path.join(out, 'report.md')
  write_markdown(report_path, workdirs, kinds, table, plots, notes, input_settings(rows))
  return [csv_path, *plots, report_path]


def final_table(rows: list[dict]) -> dict:
  """{'columns': the settings shown (the input, then the settings that vary and are not
  fixed by the input), 'rows': [{setting: value, 'n': seeds, 'rounds': final round,
  metric: (mean, 95% half width or nan)}]} of the final round of every point."""
  final = {}
  for r in rows:
    point = settings_of(r) + tuple(r.get(c, '') for c in REPLICATES)
    if point not in final or int(r['round']) > int(final[point]['round']):
      final[point] = r
  by_setting = collections.defaultdict(list)
  for point, r in final.items():
    by_setting[point[:len(SETTINGS)]].append(r)
  shown = swept(list(by_setting))
  if 'run' not in shown:
    shown.insert(0, 'run')
  out = []
  for setting, group in by_setting.items():
    entry = {c: setting[SETTINGS.index(c)] for c in shown}
    entry['n'] = len(group)
    entry['rounds'] = min(int(r['round']) for r in group)
    for m in COMPARED:
      if all(m in r for r in group):
        entry[m] = interval95([float(r[m]) for r in group])
    out.append(entry)
  return {'columns': shown, 'rows': out}


def write_table(path: str, table: dict) -> None:
  """compared.csv: the shown settings, seeds, rounds, then per metric its mean and the
  half width of its 95% interval (empty for one seed)."""
  metrics = [m for m in COMPARED if all(m in r for r in table['rows'])]
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(table['columns'] + ['n_seeds', 'rounds']
                    + [f'{m}_{s}' for m in metrics for s in ('mean', 'ci95')])
    for r in table['rows']:
      writer.writerow([r[c] for c in table['columns']] + [r['n'], r['rounds']]
                      + [f'{v:.6f}' if not math.isnan(v) else ''
                         for m in metrics for v in r[m]])


def _cell(stat) -> str:
  mean, half = stat
  return f'{mean:.4f}' + ('' if math.isnan(half) else f' ± {half:.4f}')


def input_settings(rows: list[dict]) -> dict:
  """{input: 'resampler smote, IR 10'}: the settings each input holds one value of where
  the inputs differ in it."""
  values = collections.defaultdict(lambda: collections.defaultdict(set))
  for r in rows:
    for c in SETTINGS[1:]:
      values[r['run']][c].add(r.get(c, ''))
  single = {run: {c: next(iter(v)) for c, v in cols.items() if len(v) == 1}
            for run, cols in values.items()}
  differ = [c for c in SETTINGS[1:]
            if all(c in s for s in single.values())
            and len({s[c] for s in single.values()}) > 1]
  return {run: ', '.join(label(c, s[c]) for c in differ) for run, s in single.items()}


def write_markdown(path: str, workdirs, kinds, table: dict, plots: list[str],
                   notes: list[str], fixed: dict) -> None:
  """report.md of the comparison: the inputs, the final-metrics table and the plots."""
  metrics = [m for m in COMPARED if all(m in r for r in table['rows'])]
  groups = identical_groups({m: [x for r in table['rows'] for x in r[m]] for m in metrics})
  names = labels(workdirs)
  lines = ['# Runs compared', '',
           '| input | workdir | kind | its settings that differ from the others |',
           '|---|---|---|---|']
  lines += [f'| {n} | `{w}` | {k} | {fixed.get(n, "")} |'
            for n, w, k in zip(names, workdirs, kinds)]
  lines += ['', '## Final metrics', '',
            'Final round; mean ± half width of the 95% t-interval over seeds where there are '
            'two or more (else the one value). Settings shown: those that vary and that the '
            'input does not fix. Numbers also in `compared.csv`.', '',
            '| ' + ''.join(f'{heading(c) if c != "run" else "input"} | '
                           for c in table['columns']) + 'seeds | rounds | '
            + ' | '.join(' = '.join(g) for g in groups) + ' |',
            '|---' * (len(table['columns']) + 2 + len(groups)) + '|']
  for r in table['rows']:
    lines.append('| ' + ''.join(f'{r[c]} | ' for c in table['columns'])
                 + f'{r["n"]} | {r["rounds"]} | ' + ' | '.join(_cell(r[g[0]]) for g in groups)
                 + ' |')
  same = [' = '.join(g) for g in groups if len(g) > 1]
  if same:
    lines += ['', f'Identical for every input (one column): {"; ".join(same)}.']
  lines += ['', '## Plots', '']
  lines += [n for note in notes for n in (note, '')]
  lines += [f'![{os.path.basename(p)}](plots/{os.path.basename(p)})' for p in plots]
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
