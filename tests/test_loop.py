import numpy as np

from fedar_jax import client, fedar_round, loop, metrics


def _outs(rounds: int, slots: int, extra: dict) -> fedar_round.RoundOutput:
  scalars = {k: np.full(rounds, 0.5, np.float32) for k in metrics.METRIC_NAMES}
  stats = client.ClientStats(*(np.zeros((rounds, slots), t) for t in
                               (np.float32, bool, np.int32, np.int32, np.float32, bool)))
  return fedar_round.RoundOutput({**scalars, 'recall': np.full((rounds, 2), 0.5), **extra},
                                 stats, np.zeros((rounds, slots), np.int32))


def test_client_evaluation_columns_end_the_rows():
  header = loop.csv_header(['a', 'b'], client_eval=True)
  assert header[:len(loop.csv_header(['a', 'b']))] == loop.csv_header(['a', 'b'])
  assert header[-4:] == ['client_gmean_mean', 'client_gmean_p10',
                         'client_minority_recall_mean', 'client_minority_recall_p10']
  gmean = np.array([[0.2, 0.4, 0.6, 0.8, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0]], np.float32)
  recall = np.array([[1, 1, 0, 0, 1], [0.5, 0.5, 0.5, 0.5, 0.5]], np.float32)
  rows = loop.csv_rows(1, _outs(2, 3, {'client_gmean': gmean,
                                       'client_minority_recall': recall}), 0.1)
  # csv_rows leaves out the epsilon cell, which run_calls puts after round_s.
  fixed = header.index('epsilon')
  assert header[fixed - 1] == 'round_s'
  assert all(len(r) == len(header) - 1 for r in rows)
  cells = [dict(zip(header, r[:fixed] + ['inf'] + r[fixed:])) for r in rows]
  assert cells[0]['client_gmean_mean'] == f'{0.6:.6f}'
  assert cells[0]['client_gmean_p10'] == f'{np.percentile(gmean[0], 10):.6f}' == '0.280000'
  assert cells[1]['client_minority_recall_p10'] == '0.500000'
  assert cells[1]['client_gmean_p10'] == '0.000000'


def test_rows_without_client_evaluation_keep_their_columns():
  rows = loop.csv_rows(1, _outs(2, 3, {}), 0.1)
  assert all(len(r) == len(loop.csv_header(['a', 'b'])) - 1 for r in rows)  # No epsilon.


def test_sweep_rows_put_epsilon_the_dp_settings_then_client_evaluation(tmp_path):
  import csv
  import os
  from fedar_jax import sweep_axes, sweep_runner
  from fedar_jax.config import RunConfig
  base = RunConfig(num_clients=3, samples_per_client=40, feature_dim=6, test_per_class=10,
                   local_epochs=1, rounds=2, eval_clients=2)
  axes = sweep_axes.SweepAxes.of(base, thresholds=(1.0, 20.0))
  sweep_runner.run_sweep(base, axes, str(tmp_path), stream=open(os.devnull, 'w'))
  with open(tmp_path / 'sweep.csv', newline='') as f:
    rows = list(csv.reader(f))
  header = rows[0]
  at = header.index('epsilon')
  trailing = list(sweep_axes.TRAILING_COLUMNS)
  assert header[at - 1] == 'round_s' and header[at + 1:at + 1 + len(trailing)] == trailing
  assert header[-4:] == list(loop.CLIENT_EVAL_COLUMNS)
  for row in rows[1:]:
    assert len(row) == len(header) and row[at] == 'inf'
    cells = dict(zip(header, row))
    assert float(cells['dp_clip_norm']) == RunConfig().dp_clip_norm
    assert 0.0 <= float(cells['client_gmean_mean']) <= 1.0
