"""The sweep report (summary.csv, plots, report.md) and the progress bar, on hand-made data."""
import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest

from fedar_jax import progress
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
  best_10 = max(rows[3:], key=lambda r: float(r['gmean_mean']))
  # A sweep.csv from before the data_seed / attacker_fraction columns: those cells are empty.
  assert f'| 10 | smote | 0.001 |  |  | {best_10["threshold"]} | ' in md


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


def test_report_names_tied_thresholds(tmp_path):
  """Thresholds 1, 1.5 and 3 give identical runs (as when every client's IR exceeds 3);
  report.md names them together, and a best threshold without a tie stands alone."""
  rng = np.random.default_rng(2)
  with open(tmp_path / 'sweep.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    for ir, tied in (('2', ('1', '1.5', '3')), ('10', ())):
      shared = rng.uniform(0.5, 0.6, size=(2, len(COLUMNS) - 6)).round(6)
      for t in ('1', '1.5', '3', '10'):
        for r in (1, 2):
          metrics = shared[r - 1].copy() if t in tied else rng.uniform(
              0.0, 0.4, size=len(COLUMNS) - 6).round(6)
          if ir == '10' and t == '1.5':
            metrics[COLUMNS.index('gmean') - 6] = 0.9
          writer.writerow([ir, 'smote', t, '0', '0.001', r] + list(metrics))
  report.write_report(str(tmp_path))
  md = (tmp_path / 'report.md').read_text()
  # Columns: ratio, resampler, learning rate, data seed and attackers (empty: a sweep.csv
  # without those columns), best threshold, G-mean.
  assert '| 2 | smote | 0.001 |  |  | 1, 1.5, 3 tied | ' in md
  assert '| 10 | smote | 0.001 |  |  | 1.5 | 0.9000 |' in md
  best = report_tables.best_thresholds(report_tables.summarize(*report_columns.read_rows(tmp_path / 'sweep.csv'))[1])
  rest = ('',) * (len(report_columns.KEY_COLUMNS) - 6)  # Columns this sweep.csv lacks read as ''.
  assert best[('2', 'smote', '0.001', '', '') + rest][1] == ['1', '1.5', '3']
  assert best[('10', 'smote', '0.001', '', '') + rest][1] == ['1.5']


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


def test_progress_eta_is_median_round_time_times_rounds_left():
  out = io.StringIO()
  bar = progress.Progress(total_rounds=10, total_points=6, stream=out)
  bar.skip(2)
  bar.compiled(4.0)
  for seconds in (1.0, 3.0, 2.0):
    bar.round_done(seconds, 'group a')
  assert bar.eta() == pytest.approx(2.0 * 5)
  assert bar.eta(groups_left=1) == pytest.approx(2.0 * 5 + 4.0)
  last = out.getvalue().strip().splitlines()[-1]
  assert 'rounds 5/10' in last and 'points 0/6' in last and 'eta 0:00:10' in last


def test_resampler_by_ratio_table_marks_the_best_per_column_and_names_ties(tmp_path):
  # 3 resamplers x 2 ratios x 3 seeds (final round 2; round 1 must be ignored).
  final = {('none', '2'): [0.5, 0.6, 0.7], ('smote', '2'): [0.7, 0.8, 0.9],
           ('enn', '2'): [0.9, 0.8, 0.7], ('none', '10'): [0.3, 0.3, 0.3],
           ('smote', '10'): [0.1, 0.2, 0.3], ('enn', '10'): [0.2, 0.25, 0.3]}
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
  assert table['ratios'] == ['2', '10'] and table['resamplers'] == ['none', 'enn', 'smote']
  assert table['rounds'] == 2 and table['seeds'] == 3
  mean, std, n = table['cells'][('smote', '2')]
  assert (mean, n) == (pytest.approx(0.8), 3) and std == pytest.approx(0.1)
  assert table['best'] == {'2': ['enn', 'smote'], '10': ['none']}
  md = (tmp_path / 'report.md').read_text()
  assert '| resampler | IR 2 | IR 10 |' in md
  assert '| none | 0.6000 ± 0.1000 | **0.3000 ± 0.0000** |' in md
  assert '| smote | **0.8000 ± 0.1000** | 0.2000 ± 0.1000 |' in md
  assert 'Ties for best: IR 2: enn, smote.' in md
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
  lead, trailing = report_columns.LEAD_KEY_COLUMNS, report_columns.TRAILING_KEY_COLUMNS
  assert header[:len(lead)] == list(lead) and header[-len(trailing):] == list(trailing)
  assert 'seed' not in header and 'defence' in header and 'prox_mu' in header


def test_no_attack_table_without_attacker_fractions(tmp_path):
  _write_sweep(tmp_path / 'sweep.csv', np.random.default_rng(3))  # No attack columns.
  report.write_report(str(tmp_path))
  assert 'by defence and attacker fraction' not in (tmp_path / 'report.md').read_text()
  assert not (tmp_path / 'plots' / 'gmean_vs_attackers.png').exists()


def test_per_setting_figures_are_left_out_above_max_panels(tmp_path):
  n = report_columns.MAX_PANELS + 1  # One setting (imbalance ratio) per panel, 2 seeds each.
  with open(tmp_path / 'sweep.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    for ir in range(1, n + 1):
      for seed in ('0', '1'):
        writer.writerow([ir, 'smote', '1.5', seed, '0.001', 1] + [0.5] * (len(COLUMNS) - 6))
  outputs = report.write_report(str(tmp_path))
  assert not any(name in p for p in outputs for name in (
      'gmean_vs_threshold', 'gmean_per_round', 'recall_per_class'))
  md = (tmp_path / 'report.md').read_text()
  assert f'{n} settings: the per-setting figures' in md and f'left out above {n - 1}' in md
  # One setting fewer: the figures are back.
  rows = (tmp_path / 'sweep.csv').read_text().splitlines()
  (tmp_path / 'sweep.csv').write_text('\n'.join(rows[:-2]) + '\n')
  outputs = report.write_report(str(tmp_path))
  assert sum('gmean_per_round' in p for p in outputs) == 1
