"""The partition summary a run writes to its workdir: per-client class counts and IRs.

  partition.json  class names, per-client counts [C][K], IR per client, attacker
                  flags, and the IR histogram (bin edges and client counts)
  partition.csv   one row per client: client, n, count_<class>..., ir, attacker
  partition.png   per-client stacked class counts and the IR histogram

IR = largest class count / smallest class count over the K classes; a client
holding a single class has IR inf ("inf" in both files) and counts in its own
histogram bin (`single_class`), apart from the finite bins. The other IR
histogram bins include their right edge, (a, b] (the first is [1, 1.5]), so a
client at IR 10 counts in (5, 10]. (The FedAR gate, resample/gate.py, reads a
single-class client's IR as 1: there is no minority row to resample from.)
"""
import csv
import json
import os

import numpy as np

from fedar_jax import plot_style
from fedar_jax.data import federated

IR_BINS = (1, 1.5, 2, 3, 5, 10, 20, 50, 100, np.inf)


def partition_summary(data) -> dict:
  """Per-client counts and imbalance ratios of a FederatedDataset (JSON-ready dict)."""
  c = data.clients
  k = len(data.class_names)
  counts = federated.client_class_counts(c, k)
  ir = client_irs(counts)
  single = np.isinf(ir)
  hist = ir_histogram(ir[~single])
  attackers = (np.zeros(len(ir), bool) if data.attackers is None
               else np.asarray(data.attackers, bool))
  return {
      'class_names': list(data.class_names),
      'counts': counts.tolist(),
      'n': counts.sum(axis=1).tolist(),
      'ir': [float(v) if np.isfinite(v) else 'inf' for v in ir],
      'attacker': attackers.tolist(),
      'ir_histogram': {'bin_edges': [float(b) if np.isfinite(b) else 'inf' for b in IR_BINS],
                       'closed': 'right', 'clients': hist.tolist(),
                       'single_class': int(single.sum())},
      'test_per_class': np.bincount(data.test.y[data.test.mask], minlength=k).tolist(),
  }


def client_irs(counts: np.ndarray) -> np.ndarray:
  """float64[C] IR of each client from its class counts int[C, K]: largest / smallest
  non-empty count; inf for a client with a single non-empty class (its minority classes
  hold no row), 1.0 for an empty client."""
  counts = np.asarray(counts)
  nonempty = (counts > 0).sum(axis=1)
  smallest = np.where(counts > 0, counts, np.inf).min(axis=1)
  ir = counts.max(axis=1) / np.where(nonempty > 0, smallest, 1)
  return np.where(nonempty == 1, np.inf, np.where(nonempty == 0, 1.0, ir))


def single_class_line(s: dict) -> str | None:
  """The console line naming the clients that hold a single class (None if there are none)."""
  single = [i for i, v in enumerate(s['ir']) if v == 'inf']
  if not single:
    return None
  shown = ', '.join(str(i) for i in single[:10]) + (', ...' if len(single) > 10 else '')
  return (f'{len(single)} of {len(s["ir"])} clients hold a single class (IR inf; '
          f'nothing to resample, the gate leaves them as they are): {shown}')


def ir_histogram(ir) -> np.ndarray:
  """Clients per IR bin (a, b] of IR_BINS (the first bin [1, 1.5]): int64[len(IR_BINS) - 1].
  Expects finite IRs (partition_summary counts single-class clients apart)."""
  edges = np.array(IR_BINS, float)
  index = np.clip(np.searchsorted(edges, np.asarray(ir, float), side='left') - 1, 0, None)
  return np.bincount(index, minlength=len(edges) - 1)


def ir_bin_labels(edges) -> list[str]:
  """'[1, 1.5]', '(1.5, 2]', ..., '(5, 10]', ..., '> 100' for bin edges (last may be inf)."""
  edges = [float(e) for e in edges]
  labels = [f'({a:g}, {b:g}]' if np.isfinite(b) else f'> {a:g}'
            for a, b in zip(edges[:-1], edges[1:])]
  labels[0] = f'[{edges[0]:g}, {edges[1]:g}]'
  return labels


def write_partition_summary(workdir: str, data) -> dict:
  """Writes partition.json, partition.csv and partition.png to `workdir`; returns the summary."""
  s = partition_summary(data)
  with open(os.path.join(workdir, 'partition.json'), 'w') as f:
    json.dump(s, f, indent=1)
  with open(os.path.join(workdir, 'partition.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['client', 'n', *[f'count_{n}' for n in s['class_names']], 'ir', 'attacker'])
    for i, row in enumerate(s['counts']):
      ir = s['ir'][i]
      w.writerow([i, s['n'][i], *row, ir if ir == 'inf' else f'{ir:.4f}',
                  int(s['attacker'][i])])
  _plot(os.path.join(workdir, 'partition.png'), s)
  return s


def _plot(path: str, s: dict) -> None:
  plt = plot_style.pyplot()
  counts = np.array(s['counts'])
  shown = counts[:200]  # Keep the bar chart readable for huge client counts.
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.4))
  bottom = np.zeros(len(shown))
  for k, name in enumerate(s['class_names']):
    color = plot_style.PALETTE[k] if len(s['class_names']) <= len(plot_style.PALETTE) else None
    ax0.bar(np.arange(len(shown)), shown[:, k], bottom=bottom, label=name, width=1.0,
            color=color, edgecolor='white', linewidth=0.3 if len(shown) <= 50 else 0)
    bottom += shown[:, k]
  ax0.set(xlabel='client' + (' (first 200)' if len(counts) > 200 else ''), ylabel='rows',
          title=f'class counts per client ({len(counts)} clients)')
  ax0.legend(title='class', fontsize=9, title_fontsize=9, loc='upper left',
             bbox_to_anchor=(1.0, 1.0), ncol=1 if len(s['class_names']) <= 12 else 2)
  labels = ir_bin_labels(s['ir_histogram']['bin_edges'])
  ax1.bar(np.arange(len(labels)), s['ir_histogram']['clients'], color=plot_style.PALETTE[0])
  single = s['ir_histogram']['single_class']
  ax1.bar(len(labels), single, color=plot_style.PALETTE[1])  # Its own bin, apart in colour.
  labels = [*labels, 'single class\n(IR inf)']
  ax1.set_xticks(np.arange(len(labels)), labels, rotation=30, fontsize=9)
  ax1.set(xlabel='client imbalance ratio (bin (a, b]: a < IR <= b)', ylabel='clients',
          title='client IR histogram')
  plot_style.save(fig, path)
