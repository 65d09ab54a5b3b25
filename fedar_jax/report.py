"""Reports: `python -m fedar_jax.report --workdir=DIR` (or `fedar-report`) (re)writes,
from a sweep's DIR/sweep.csv,

  DIR/summary.csv   final-round metrics per sweep point: mean and sample std (ddof=1;
                    empty for one seed) over seeds, keyed by every setting column of
                    sweep.csv but the seed (KEY_COLUMNS, from sweep_axes.SETTING_COLUMNS;
                    a column an older sweep.csv lacks reads as '')
  DIR/plots/gmean_vs_<x>.png  final G-mean against each swept number x (gmean_vs_ir.png,
                    gmean_vs_threshold.png, gmean_vs_attackers.png, gmean_vs_<column>.png):
                    a line per value of a swept code setting (else of another swept number),
                    a panel per combination of the rest, mean and 95% CI band over seeds,
                    the baseline (`none`, else the first value) in black, coinciding lines
                    merged ("smote = smote_tomek"); more than 8 lines: a panel per line
                    with the baseline, or a ranked dot plot (gmean_by_<column>.png, also
                    where no number is swept). Layout: report_axes.
  DIR/plots/gmean_per_round.png, recall_per_class.png   G-mean per round and final
                    per-class recall, a line (bar group) per value of the same setting
  DIR/plots/gmean_vs_epsilon.png     final G-mean vs epsilon, a line per resampler, a
                                     panel per setting (sweeps over two or more
                                     --dp_noise_multipliers)
  DIR/report.md     the tables (thresholds tied at the best G-mean named together; the
                    paper's resampler x imbalance ratio table; the defence x attacker
                    fraction table per attack; G-mean by epsilon and resampler) and the
                    plots

and from a single run's DIR/metrics.csv, DIR/plots/metrics_per_round.png (every
metric per round). Figures share `plot_style` (palette, line styles, 150 dpi).

Several inputs, `--workdir=A --workdir=B ... --out=DIR` (runs or sweeps), go into one
report in DIR (report_compare): report.md, compared.csv (final metrics per input and
setting, mean and 95% interval over seeds) and plots/ (the inputs as lines, one y-scale,
per-round curves overlaid). DIR may not be one of the inputs.
"""
import os
import sys

from fedar_jax import interrupts  # Light: the start-up signal handler goes in before NumPy.
from fedar_jax import std_streams  # Light: stdlib only.

if __name__ == '__main__':
  std_streams.guard()
  interrupts.exit_while_starting()

from fedar_jax import flagfiles
from fedar_jax import report_privacy
from fedar_jax.report_columns import read_rows
from fedar_jax.report_plots import write_run_plot, write_sweep_figures
from fedar_jax.report_tables import (attack_table_markdown, attack_tables, ir_table_markdown,
                                     ir_tables, summarize, write_markdown, write_summary)


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
  plots, notes = write_sweep_figures(os.path.join(workdir, 'plots'), columns, rows)
  sections = []
  tables = ir_tables(rows)
  if any(len(t['ratios']) > 1 for t in tables):
    sections = ir_table_markdown(tables)
  attacks = attack_tables(rows)
  if any(len(t['fractions']) > 1 for t in attacks):
    sections = list(sections) + attack_table_markdown(attacks)
  privacy = report_privacy.epsilon_tables(rows)
  if any(len(t['sigmas']) > 1 for t in privacy):
    plots.append(report_privacy.write_epsilon_plot(os.path.join(workdir, 'plots'), privacy))
    sections = list(sections) + report_privacy.epsilon_table_markdown(privacy)
  report_path = os.path.join(workdir, 'report.md')
  write_markdown(report_path, columns, summary, plots, sections, notes, rows)
  return [summary_path, *plots, report_path]


def _write_one(workdir: str) -> list[str]:
  sweep, run = (os.path.join(workdir, n) for n in ('sweep.csv', 'metrics.csv'))
  if os.path.isfile(sweep):
    return write_report(workdir)
  if os.path.isfile(run):
    return [write_run_plot(workdir)]
  raise ValueError(f'--workdir: neither {sweep} nor {run} exists (run fedar_jax.sweep '
                   'or fedar_jax.main first)')


def main(argv=None):
  """`python -m fedar_jax.report --workdir=DIR`, the console script `fedar-report`."""
  from absl import flags
  argv = sys.argv if argv is None else argv
  flag_values = flags.FlagValues()
  flags.DEFINE_multi_string('workdir', None, 'A sweep workdir (holding sweep.csv) or a '
                            "single run's workdir (holding metrics.csv); repeat it, with "
                            '--out, to compare several.', flag_values=flag_values)
  flags.DEFINE_string('out', None, 'Where the report of two or more --workdir goes (created; '
                      'not one of the inputs).', flag_values=flag_values)
  if any(a in ('-h', '-help', '--help', '--helpshort', '--helpfull') for a in argv[1:]):
    from fedar_jax.cli import print_help
    print_help(f'{__doc__.strip()}\n\nflags:\n  --workdir: {flag_values["workdir"].help}'
                  f'\n  --out: {flag_values["out"].help}')
    return
  try:
    argv = flagfiles.parse(flag_values, argv)
    if len(argv) > 1:
      raise ValueError(f'unexpected arguments: {" ".join(argv[1:])} (every input is a flag: '
                       '--workdir=DIR)')
    workdirs = flag_values.workdir or []
    if not workdirs or not all(workdirs):
      raise ValueError('--workdir: is required')
    if len(workdirs) > 1:
      if not flag_values.out:
        raise ValueError(f'--out: is required with {len(workdirs)} --workdir (the folder '
                         'the combined report goes to)')
      from fedar_jax import report_compare
      outputs = report_compare.write_comparison(workdirs, flag_values.out)
    else:
      if flag_values.out:
        raise ValueError('--out: only with two or more --workdir (the report of one '
                         'workdir is written into it)')
      outputs = _write_one(workdirs[0])
  except (flags.Error, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except OSError as e:  # A file or folder of the workdir that cannot be read or written.
    what = ('exists and is not a directory' if isinstance(e, (FileExistsError, NotADirectoryError))
            else e.strerror or type(e).__name__)
    print(f'error: {e.filename}: {what}', file=sys.stderr)
    sys.exit(2)
  print(f"wrote {', '.join(outputs)}")
  std_streams.exit_if_stdout_lost(f"wrote {', '.join(outputs)}")


if __name__ == '__main__':
  main()
