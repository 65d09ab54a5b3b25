"""The partition summary a run writes to its workdir: per-client class counts and IRs.

  partition.json  class names, per-client counts [C][K], IR per client, attacker
                  flags, and the IR histogram (bin edges and client counts)
  partition.csv   one row per client: client, n, count_<class>..., ir, attacker
  partition.png   per-client stacked class counts and the IR histogram
"""
import csv
import json
import os

import numpy as np

IR_BINS = (1, 1.5, 2, 3, 5, 10, 20, 50, 100, np.inf)


def partition_summary(data) -> dict:
  """Per-client counts and imbalance ratios of a FederatedDataset (JSON-ready dict)."""
  c = data.clients
  k = len(data.class_names)
  counts = np.stack([np.bincount(c.y[i][c.mask[i]], minlength=k) for i in range(c.y.shape[0])])
  present = np.where(counts > 0, counts, np.inf).min(axis=1)
  ir = np.where(np.isfinite(present), counts.max(axis=1) / np.where(np.isfinite(present),
                                                                  present, 1), 1.0)
  hist, _ = np.histogram(ir, bins=np.array(IR_BINS, float))
  attackers = (np.zeros(len(ir), bool) if data.attackers is None
               else np.asarray(data.attackers, bool))
  return {
      'class_names': list(data.class_names),
      'counts': counts.tolist(),
      'n': counts.sum(axis=1).tolist(),
      'ir': [float(v) for v in ir],
      'attacker': attackers.tolist(),
      'ir_histogram': {'bin_edges': [float(b) if np.isfinite(b) else 'inf' for b in IR_BINS],
                       'clients': hist.tolist()},
      'test_per_class': np.bincount(data.test.y[data.test.mask], minlength=k).tolist(),
  }


def write_partition_summary(workdir: str, data) -> dict:
  """Writes partition.json, partition.csv and partition.png to `workdir`; returns the summary."""
  s = partition_summary(data)
  with open(os.path.join(workdir, 'partition.json'), 'w') as f:
    json.dump(s, f, indent=1)
  with open(os.path.join(workdir, 'partition.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['client', 'n', *[f'count_{n}' for n in s['class_names']], 'ir', 'attacker'])
    for i, row in enumerate(s['counts']):
      w.writerow([i, s['n'][i], *row, f'{s["ir"][i]:.4f}', int(s['attacker'][i])])
  _plot(os.path.join(workdir, 'partition.png'), s)
  return s


def _plot(path: str, s: dict) -> None:
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  counts = np.array(s['counts'])
  shown = counts[:200]  # Keep the bar chart readable for huge client counts.
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
  bottom = np.zeros(len(shown))
  for k, name in enumerate(s['class_names']):
    ax0.bar(np.arange(len(shown)), shown[:, k], bottom=bottom, label=name, width=1.0)
    bottom += shown[:, k]
  ax0.set(xlabel='client' + (' (first 200)' if len(counts) > 200 else ''), ylabel='rows',
          title='class counts per client')
  ax0.legend(fontsize=7, ncol=2)
  labels = [f'{a:g}-{b}' for a, b in zip(s['ir_histogram']['bin_edges'][:-1],
                                          s['ir_histogram']['bin_edges'][1:])]
  ax1.bar(np.arange(len(labels)), s['ir_histogram']['clients'])
  ax1.set_xticks(np.arange(len(labels)), labels, rotation=45, fontsize=7)
  ax1.set(xlabel='imbalance ratio', ylabel='clients', title='client IR histogram')
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
