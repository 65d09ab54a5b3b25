"""The sweep report (summary.csv, plots, report.md), on hand-made data."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from fedar_jax import report
from fedar_jax import report_columns
from fedar_jax import report_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = ['imbalance_ratio', 'resampler', 'threshold', 'seed', 'learning_rate', 'round',
           'accuracy', 'sensitivity', 'specificity', 'precision', 'f1', 'gmean',
           'gmean_multiclass', 'recall_0', 'recall_1', 'resampled_clients', 'mean_client_ir',
           'train_loss', 'round_s']


def _assert_linked_png(workdir, name, outputs, md):
  """workdir/plots/name is a PNG, among write_report's outputs and linked in report.md."""
  png = workdir / 'plots' / name
  assert str(png) in outputs and png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert f'plots/{name}' in md


def _write_sweep(path, rng):
  """A sweep.csv of 2 IRs x 3 thresholds x 3 seeds x 4 rounds with random metrics."""
  values = {}
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    for ir in ('2', '10'):
      for t in ('1', '1.5', '3'):
        for seed in ('0', '1', '2'):
          for r in range(1, 5):
            metrics = rng.uniform(size=len(COLUMNS) - 6).round(6)
            values[(ir, t, seed, r)] = metrics
            writer.writerow([ir, 'smote', t, seed, '0.001', r] + list(metrics))
  return values


def test_summary_is_final_round_mean_and_sample_std_over_seeds(tmp_path):
  values = _write_sweep(tmp_path / 'sweep.csv', np.random.default_rng(0))
  outputs = report.write_report(str(tmp_path))
  with open(tmp_path / 'summary.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['imbalance_ratio'], r['threshold']) for r in rows] == [
      ('2', '1'), ('2', '1.5'), ('2', '3'), ('10', '1'), ('10', '1.5'), ('10', '3')]
  gmean = COLUMNS.index('gmean') - 6
  recall_1 = COLUMNS.index('recall_1') - 6
  for row in rows:
    final = np.array([values[(row['imbalance_ratio'], row['threshold'], s, 4)]
                      for s in ('0', '1', '2')])
    assert row['n_seeds'] == '3' and row['rounds'] == '4'
    assert float(row['gmean_mean']) == pytest.approx(final[:, gmean].mean(), abs=1e-6)
    assert float(row['gmean_std']) == pytest.approx(final[:, gmean].std(ddof=1), abs=1e-6)
    assert float(row['recall_1_mean']) == pytest.approx(final[:, recall_1].mean(), abs=1e-6)
  assert 'round_s_mean' not in rows[0] and 'seed_mean' not in rows[0]
  for path in outputs:
    assert os.path.getsize(path) > 0
  assert sorted(os.listdir(tmp_path / 'plots')) == [
      'gmean_per_round.png', 'gmean_vs_ir.png', 'gmean_vs_threshold.png',
      'recall_per_class.png']
  md = (tmp_path / 'report.md').read_text()
  # Only the settings that vary (IR, threshold) are columns; the best threshold needs a test.
  assert '| IR | threshold | seeds | ' in md and '| IR | best threshold | G-mean |' in md
  assert md.count('| 10 | not separable: ') + md.count('| 10 | **') == 1
  # The 95% t-interval half widths close the row, after every mean and std.
  header = list(rows[0])
  assert header[-len(COLUMNS) + 7:] == [f'{m}_ci95' for m in COLUMNS[6:-1]]
  assert header.index('round_s_ci95' if 'round_s_ci95' in header else 'gmean_ci95') > header.index(
      'train_loss_std')
  final = np.array([values[('2', '1', s, 4)][gmean] for s in ('0', '1', '2')])
  assert float(rows[0]['gmean_ci95']) == pytest.approx(
      4.302653 * final.std(ddof=1) / np.sqrt(3), abs=2e-6)


def test_report_cli(tmp_path):
  _write_sweep(tmp_path / 'sweep.csv', np.random.default_rng(1))
  proc = subprocess.run([sys.executable, '-m', 'fedar_jax.report', f'--workdir={tmp_path}'],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / 'report.md').exists()
  proc = subprocess.run([sys.executable, '-m', 'fedar_jax.report',
                         f'--workdir={tmp_path / "none"}'],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and proc.stderr.startswith('error: --workdir: ')
  assert len(proc.stderr.strip().splitlines()) == 1
  proc = subprocess.run([sys.executable, '-m', 'fedar_jax.report', '--help'],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0 and '--workdir' in proc.stdout, proc.stderr


def test_best_threshold_is_bold_only_where_the_paired_test_separates_it(tmp_path):
  """IR 2: threshold 1.5 beats 1 and 3 by 0.1 on every seed (paired) though the seeds spread
  by 0.3; IR 10: the thresholds differ by noise only. A sweep with one threshold has no
  best-threshold section."""
  rng = np.random.default_rng(2)
  with open(tmp_path / 'sweep.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    for ir in ('2', '10'):
      for seed in range(4):
        level = 0.3 + 0.1 * seed
        for t in ('1', '1.5', '3'):
          g = level + (0.1 + rng.normal(0, 0.005) if ir == '2' and t == '1.5' else
                       rng.normal(0, 0.005) * (ir == '10'))
          metrics = [0.5] * (len(COLUMNS) - 6)
          metrics[COLUMNS.index('gmean') - 6] = round(g, 6)
          writer.writerow([ir, 'smote', t, seed, '0.001', 1] + metrics)
  report.write_report(str(tmp_path))
  md = (tmp_path / 'report.md').read_text()
  assert 'paired t-test' in md and 'Holm' in md
  assert '| 2 | **1.5** | ' in md
  assert '| 10 | not separable: ' in md
  best = report_tables.best_thresholds(report_columns.read_rows(tmp_path / 'sweep.csv')[1])
  winners = {p[0]: (w, tied) for p, (w, tied, _) in best.items()}
  assert winners['2'] == ('1.5', []) and winners['10'][0] is None
  assert sorted(winners['10'][1]) == ['1', '1.5', '3']
  rows = [r for r in (tmp_path / 'sweep.csv').read_text().splitlines() if ',1.5,' not in r
          and ',3,' not in r]
  (tmp_path / 'sweep.csv').write_text('\n'.join(rows) + '\n')
  report.write_report(str(tmp_path))
  assert 'Best threshold' not in (tmp_path / 'report.md').read_text()


def test_identical_metrics_share_a_column_and_coinciding_settings_are_named(tmp_path):
  with open(tmp_path / 'sweep.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    for t, g in (('1', 0.6), ('3', 0.7), ('10', 0.7)):
      for seed in (0, 1):
        metrics = dict(zip(COLUMNS[6:], [0.4] * (len(COLUMNS) - 6)))
        metrics.update(gmean=g + 0.01 * seed, accuracy=g + 0.01 * seed,
                       sensitivity=g + 0.01 * seed, specificity=g + 0.01 * seed)
        writer.writerow(['4', 'smote', t, seed, '0.001', 1] + list(metrics.values()))
  report.write_report(str(tmp_path))
  md = (tmp_path / 'report.md').read_text()
  assert '| threshold | seeds | gmean = sensitivity = specificity = accuracy | f1 = precision ' \
         '| resampled clients |' in md
  assert 'Identical in every setting (one column): gmean = sensitivity = specificity = ' \
         'accuracy; f1 = precision.' in md
  assert '(threshold 3) = (threshold 10)' in md
  assert 'Every setting shares IR 4, resampler smote, lr 0.001' in md


def test_run_plot_from_metrics_csv(tmp_path):
  header = ['round', 'accuracy', 'gmean', 'recall_a', 'recall_b', 'resampled_clients',
            'dropped_clients', 'fallback_clients', 'mean_client_ir', 'train_loss', 'round_s']
  with open(tmp_path / 'metrics.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for r in (1, 2, 3):
      writer.writerow([r, 0.5, 0.4, 0.3, 0.6, 3, 0, 0, 10.0, 0.7, 0.01])
  proc = subprocess.run([sys.executable, '-m', 'fedar_jax.report', f'--workdir={tmp_path}'],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / 'plots' / 'metrics_per_round.png').stat().st_size > 10000


def test_resampler_by_ratio_table_marks_the_best_per_column_and_names_ties(tmp_path):
  # 3 resamplers x 2 ratios x 3 seeds (final round 2; round 1 must be ignored).
  final = {('none', '2'): [0.5, 0.6, 0.7], ('smote', '2'): [0.7, 0.8, 0.9],
           ('enn', '2'): [0.9, 0.8, 0.7], ('none', '10'): [0.3, 0.3, 0.3],
           ('smote', '10'): [0.1, 0.2, 0.3], ('enn', '10'): [0.2, 0.25, 0.3],
           ('tomek', '2'): [0.5, 0.6, 0.7], ('tomek', '10'): [0.3, 0.3, 0.3]}
  columns = ['imbalance_ratio', 'resampler', 'threshold', 'seed', 'learning_rate', 'data_seed',
             'attacker_fraction', 'round', 'gmean', 'accuracy', 'sensitivity', 'specificity',
             'precision', 'f1', 'recall_0', 'recall_1', 'resampled_clients', 'round_s']
  with open(tmp_path / 'sweep.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for (resampler, ir), values in final.items():
      for seed, v in enumerate(values):
        for r, g in ((1, 1.0), (2, v)):
          writer.writerow([ir, resampler, '1.5', seed, '0.001', '0', '0', r, g] + [0.5] * 7
                          + [1, 0.1])
  outputs = report.write_report(str(tmp_path))
  [table] = report_tables.ir_tables(report_columns.read_rows(str(tmp_path / 'sweep.csv'))[1])
  assert table['ratios'] == ['2', '10']
  assert table['resamplers'] == ['none', 'enn', 'smote', 'tomek']
  assert table['rounds'] == 2 and table['seeds'] == 3
  mean, std, n = table['cells'][('smote', '2')]
  assert (mean, n) == (pytest.approx(0.8), 3) and std == pytest.approx(0.1)
  # Three seeds of these spreads separate nothing: no bold, the rows named instead.
  assert table['best'] == {'2': [], '10': []}
  assert table['not_separable'] == {'2': ['enn', 'none', 'smote', 'tomek'],
                                    '10': ['none', 'enn', 'smote', 'tomek']}
  md = (tmp_path / 'report.md').read_text()
  assert '| resampler | IR 2 | IR 10 |' in md and '**' not in md.split('by resampler')[1]
  assert '| none | 0.6000 ± 0.1000 | 0.3000 ± 0.0000 |' in md
  assert 'Not separable: IR 2: all 4; IR 10: all 4.' in md
  assert 'Equal in every column (4 decimals): none = tomek.' in md
  _assert_linked_png(tmp_path, 'gmean_vs_ir.png', outputs, md)


def test_defence_by_attacker_fraction_table_per_attack(tmp_path):
  # 2 attacks x 2 defences x 3 fractions x 2 seeds (final round 2; round 1 must be ignored).
  columns = ['imbalance_ratio', 'resampler', 'threshold', 'seed', 'learning_rate', 'data_seed',
             'attacker_fraction', 'aggregator', 'attack', 'defence', 'round', 'gmean',
             'accuracy', 'sensitivity', 'specificity', 'precision', 'f1', 'recall_0',
             'recall_1', 'resampled_clients', 'round_s']
  final = {}
  with open(tmp_path / 'sweep.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for defence, resampler, aggregator in (('none', 'none', 'mean'),
                                           ('fedar_median', 'smote', 'median')):
      for attack in ('skew', 'label_flip'):
        for i, fraction in enumerate(('0', '0.2', '0.4')):
          for seed in (0, 1):
            g = 0.9 - 0.1 * i * (attack == 'skew') - 0.05 * seed + 0.01 * (defence != 'none')
            final[(attack, defence, fraction, seed)] = g
            for r, value in ((1, 0.0), (2, g)):
              writer.writerow(['4', resampler, '1.5', seed, '0.001', '0', fraction, aggregator,
                               attack, defence, r, value] + [0.5] * 7 + [0, 0.1])
  outputs = report.write_report(str(tmp_path))
  tables = report_tables.attack_tables(report_columns.read_rows(str(tmp_path / 'sweep.csv'))[1])
  assert [t['attack'] for t in tables] == ['skew', 'label_flip']
  skew = tables[0]
  # Rows keep the sweep's order and are labelled by the named defence alone.
  assert skew['defences'] == ['none', 'fedar_median'] and skew['fractions'] == ['0', '0.2', '0.4']
  mean, std, n = skew['cells'][('fedar_median', '0.4')]
  want = [final[('skew', 'fedar_median', '0.4', s)] for s in (0, 1)]
  assert n == 2 and mean == pytest.approx(np.mean(want))
  assert std == pytest.approx(np.std(want, ddof=1))
  assert skew['best']['0'] == ['fedar_median']
  md = (tmp_path / 'report.md').read_text()
  assert '## Final G-mean by defence and attacker fraction' in md
  assert '### attack skew (2 rounds, 2 seeds)' in md
  assert '| defence | attackers 0 | attackers 0.2 | attackers 0.4 |' in md
  assert '| none | 0.8750 ± 0.0354 | 0.7750 ± 0.0354 | 0.6750 ± 0.0354 |' in md
  _assert_linked_png(tmp_path, 'gmean_vs_attackers.png', outputs, md)
  # The summary keys every setting column (a missing one reads as ''), not the seed.
  with open(tmp_path / 'summary.csv') as f:
    header = next(csv.reader(f))
  assert header[:len(report_columns.KEY_COLUMNS)] == list(report_columns.KEY_COLUMNS)
  assert 'seed' not in header and 'defence' in header and 'prox_mu' in header


def test_no_attack_table_without_attacker_fractions(tmp_path):
  _write_sweep(tmp_path / 'sweep.csv', np.random.default_rng(3))  # No attack columns.
  report.write_report(str(tmp_path))
  assert 'by defence and attacker fraction' not in (tmp_path / 'report.md').read_text()
  assert not (tmp_path / 'plots' / 'gmean_vs_attackers.png').exists()


def test_per_round_figures_are_left_out_above_max_lines(tmp_path):
  from fedar_jax import report_axes
  n = report_axes.MAX_LINES + 1  # One setting (imbalance ratio) per line, 2 seeds each.
  with open(tmp_path / 'sweep.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    for ir in range(1, n + 1):
      for seed in ('0', '1'):
        writer.writerow([ir, 'smote', '1.5', seed, '0.001', 1] + [0.5] * (len(COLUMNS) - 6))
  outputs = report.write_report(str(tmp_path))
  assert not any(name in p for p in outputs for name in ('gmean_per_round', 'recall_per_class'))
  assert sum('gmean_vs_ir' in p for p in outputs) == 1
  md = (tmp_path / 'report.md').read_text()
  assert f'left out ({n} IR values, more than {n - 1} lines)' in md
  assert sorted(os.listdir(tmp_path / 'plots')) == ['gmean_vs_ir.png']
  # One setting fewer: the figures are back.
  rows = (tmp_path / 'sweep.csv').read_text().splitlines()
  (tmp_path / 'sweep.csv').write_text('\n'.join(rows[:-2]) + '\n')
  (tmp_path / 'plots' / 'mine.png').write_bytes(b'')  # Not a report figure: kept.
  outputs = report.write_report(str(tmp_path))
  assert sum('gmean_per_round' in p for p in outputs) == 1
  # Back to 9 lines: the figures of 8 lines are removed with it, the other file kept.
  (tmp_path / 'sweep.csv').write_text('\n'.join(rows) + '\n')
  report.write_report(str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'plots')) == ['gmean_vs_ir.png', 'mine.png']


def test_paired_t_holm_and_interval_match_scipy():
  from scipy import stats
  from fedar_jax import report_stats
  a = {(s, ''): v for s, v in enumerate([0.80, 0.71, 0.92, 0.66])}
  b = {(s, ''): v for s, v in enumerate([0.70, 0.62, 0.81, 0.57])}
  c = {(s, ''): v for s, v in enumerate([0.60, 0.90, 0.70, 0.75])}
  assert report_stats.paired_p(a, b) == pytest.approx(
      stats.ttest_rel(list(a.values()), list(b.values())).pvalue)
  assert report_stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
  mean, half = report_stats.interval95([1.0, 2.0, 3.0])
  assert (mean, half) == (2.0, pytest.approx(stats.t.ppf(0.975, 2) / np.sqrt(3)))
  assert report_stats.separable_best({'a': a, 'b': b})[0] == 'a'  # Paired: a > b every seed.
  assert report_stats.separable_best({'a': a, 'c': c}) == (None, ['a', 'c'])
  assert report_stats.separable_best({'a': a}) == ('a', [])
  # Too few pairs to test: never separable.
  assert report_stats.paired_p({(0, ''): 1.0}, {(0, ''): 0.0}) == 1.0


def test_columns_appended_after_round_s_are_tolerated(tmp_path):
  """Newer writers append columns: numeric ones are summarized, others left out."""
  with open(tmp_path / 'sweep.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS + ['client_gmean_mean', 'epsilon', 'note'])
    for t in ('1', '3'):
      for seed in (0, 1):
        writer.writerow(['4', 'smote', t, seed, '0.001', 1] + [0.5] * (len(COLUMNS) - 6)
                        + [0.25 + seed, '' if seed else '1.5', 'x'])
  report.write_report(str(tmp_path))
  with open(tmp_path / 'summary.csv') as f:
    rows = list(csv.DictReader(f))
  assert float(rows[0]['client_gmean_mean_mean']) == pytest.approx(0.75)
  assert 'epsilon_mean' not in rows[0] and 'note_mean' not in rows[0]
  assert list(rows[0])[-1] == 'client_gmean_mean_ci95'


def test_figure_merges_coinciding_lines_and_draws_the_baseline_black(tmp_path, monkeypatch):
  from fedar_jax import plot_style, report_plots
  figures = {}

  def keep(fig, path):
    figures[os.path.basename(path)] = ([t.get_text() for t in fig.legends[0].get_texts()],
                                       [l.get_color() for l in fig.axes[0].get_lines()],
                                       [round(ax.get_ylim()[1], 6) for ax in fig.axes
                                        if ax.get_visible()])
    plot_style.pyplot().close(fig)
    return path
  monkeypatch.setattr(report_plots.plot_style, 'save_outside', keep)
  with open(tmp_path / 'sweep.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    for ir in ('2', '10'):
      for t in ('1', '3'):
        for r, g in (('smote', 0.8), ('none', 0.6), ('smote_tomek', 0.8), ('enn', 0.7)):
          for seed in (0, 1):
            metrics = [0.5] * (len(COLUMNS) - 6)
            metrics[COLUMNS.index('gmean') - 6] = g + 0.01 * seed + 0.1 * (t == '3')
            writer.writerow([ir, r, t, seed, '0.001', 1] + metrics)
  report.write_report(str(tmp_path))
  labels, colours, tops = figures['gmean_vs_ir.png']
  assert labels == ['none (baseline)', 'smote = smote_tomek', 'enn']
  assert colours[0] == '#000000' and len(set(colours)) == 3
  assert len(tops) == 2 and len(set(tops)) == 1  # Panels threshold 1 and 3, one y-scale.


def test_run_plot_merges_metrics_equal_every_round(tmp_path, monkeypatch):
  from fedar_jax import plot_style, report_plots
  seen = {}

  def keep(fig, path):
    seen['labels'] = [[t.get_text() for t in ax.get_legend().get_texts()]
                      for ax in fig.axes if ax.get_legend()]
    plot_style.pyplot().close(fig)
    return path
  monkeypatch.setattr(report_plots.plot_style, 'save', keep)
  header = ['round', 'accuracy', 'sensitivity', 'gmean', 'f1', 'recall_a', 'recall_b',
            'resampled_clients', 'dropped_clients', 'fallback_clients', 'train_loss', 'round_s']
  with open(tmp_path / 'metrics.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for r in (1, 2, 3):
      writer.writerow([r, 0.1 * r, 0.1 * r, 0.1 * r, 0.5, 0.3, 0.6, 3, 0, 0, 0.7, 0.01])
  report_plots.write_run_plot(str(tmp_path))
  assert seen['labels'][0] == ['accuracy = sensitivity = gmean', 'f1']
  assert seen['labels'][-1] == ['resampled_clients', 'dropped_clients = fallback_clients']
