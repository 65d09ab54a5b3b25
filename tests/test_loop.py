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
  assert all(len(r) == len(header) for r in rows)
  cells = [dict(zip(header, r)) for r in rows]
  assert cells[0]['client_gmean_mean'] == f'{0.6:.6f}'
  assert cells[0]['client_gmean_p10'] == f'{np.percentile(gmean[0], 10):.6f}' == '0.280000'
  assert cells[1]['client_minority_recall_p10'] == '0.500000'
  assert cells[1]['client_gmean_p10'] == '0.000000'


def test_rows_without_client_evaluation_keep_their_columns():
  rows = loop.csv_rows(1, _outs(2, 3, {}), 0.1)
  assert all(len(r) == len(loop.csv_header(['a', 'b'])) for r in rows)
