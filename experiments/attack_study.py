"""Attack study (CPU-sized): final G-mean of every defence against skew and label-flip
attackers at several attacker fractions, seeds on one vmapped sweep axis.

Each defence is one compiled program (built once, from the clean data), run on
every (attack, fraction) data set; the seeds (initialisation and client
randomness; the data comes from --data_seed) are slices of the sweep axis.
Writes OUT/attack_study.csv (one row per defence, attack, fraction, seed),
OUT/attack_study.md (final G-mean mean ± std: rows = defences, columns =
attacker fraction, one table per attack) and OUT/plots/gmean_vs_attackers.png.

  python experiments/attack_study.py --out=DIR [--fractions=0,0.1,0.2,0.3,0.4]
      [--attacks=skew,label_flip] [--seeds=0,1,2] [--rounds=10] [--defences=none,median]
"""
import argparse
import csv
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from fedar_jax import sweep_runner  # noqa: E402
from fedar_jax import train  # noqa: E402
from fedar_jax.config import RunConfig, validate  # noqa: E402
from fedar_jax.data.load import load_federated  # noqa: E402

# CPU-sized workload: every client's majority is class 0 (synthetic imbalance partition).
BASE = dict(dataset='synthetic', num_clients=20, samples_per_client=100, feature_dim=32,
            num_classes=2, imbalance_ratio=4.0, test_per_class=200, local_epochs=2,
            batch_size=32, learning_rate=1e-3, attack_ratio=100.0)

DEFENCES = {
    'nothing': dict(resampler='none'),
    'fedar_t1.5': dict(resampler='smote', threshold=1.5),
    'fedar_t3': dict(resampler='smote', threshold=3.0),
    'median': dict(resampler='none', aggregator='median'),
    'trimmed_mean': dict(resampler='none', aggregator='trimmed_mean', trim_fraction=0.2),
    'krum': dict(resampler='none', aggregator='krum', byzantine_clients=8),
    'focal': dict(resampler='none', loss='focal'),
    'balanced_softmax': dict(resampler='none', loss='balanced_softmax'),
    'fedar+median': dict(resampler='smote', threshold=1.5, aggregator='median'),
}


def run_defence(base: RunConfig, defence: dict, attacks, fractions, seeds, rows):
  """Final G-mean per (attack, fraction, seed) for one defence; appends to `rows`."""
  cfg = validate(base.replace(**defence))
  data_cfg = cfg.replace(seed=cfg.effective_data_seed)  # As train.build draws the data.
  clean = load_federated(data_cfg.replace(attacker_fraction=0.0))
  first = train.build(cfg, clean)
  step = jax.jit(sweep_runner.make_sweep_round(first.spec))
  for attack in attacks:
    for fraction in fractions:
      point = cfg.replace(attack=attack, attacker_fraction=fraction)
      data = load_federated(data_cfg.replace(attack=attack, attacker_fraction=fraction)) \
          if fraction else clean
      exps = [train.build(point.replace(seed=s, data_seed=base.effective_data_seed), data)
              for s in seeds]
      state = sweep_runner.stack([e.state for e in exps])
      hparams = sweep_runner.stack([e.hparams for e in exps])
      for _ in range(cfg.rounds):
        state, out = step(state, data.clients, data.test, hparams)
      for s, g in zip(seeds, np.asarray(out.metrics['gmean'])):
        rows.append((attack, fraction, s, float(g)))


def write_outputs(out_dir, results, attacks, fractions):
  os.makedirs(os.path.join(out_dir, 'plots'), exist_ok=True)
  with open(os.path.join(out_dir, 'attack_study.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['defence', 'attack', 'attacker_fraction', 'seed', 'gmean'])
    for name, rows in results.items():
      for attack, fraction, seed, g in rows:
        w.writerow([name, attack, f'{fraction:g}', seed, f'{g:.4f}'])
  cell = {}
  for name, rows in results.items():
    for attack in attacks:
      for fraction in fractions:
        gs = [g for a, fr, _, g in rows if a == attack and fr == fraction]
        cell[name, attack, fraction] = (statistics.mean(gs),
                                        statistics.stdev(gs) if len(gs) > 1 else 0.0)
  lines = []
  for attack in attacks:
    lines += [f'Final G-mean, attack `{attack}` (mean ± std over seeds)', '',
              '| defence | ' + ' | '.join(f'{f:g}' for f in fractions) + ' |',
              '|---' * (len(fractions) + 1) + '|']
    for name in results:
      lines.append(f'| {name} | ' + ' | '.join(
          f'{cell[name, attack, f][0]:.3f} ± {cell[name, attack, f][1]:.3f}'
          for f in fractions) + ' |')
    lines.append('')
  with open(os.path.join(out_dir, 'attack_study.md'), 'w') as f:
    f.write('\n'.join(lines))
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(attacks), figsize=(5.5 * len(attacks), 4), squeeze=False)
  for ax, attack in zip(axes[0], attacks):
    for name in results:
      ax.errorbar(fractions, [cell[name, attack, f][0] for f in fractions],
                  yerr=[cell[name, attack, f][1] for f in fractions], label=name, capsize=2)
    ax.set(title=f'attack: {attack}', xlabel='attacker fraction', ylabel='final G-mean')
  axes[0][-1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, 'plots', 'gmean_vs_attackers.png'), dpi=120)
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True)
  parser.add_argument('--fractions', default='0,0.1,0.2,0.3,0.4')
  parser.add_argument('--attacks', default='skew,label_flip')
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--rounds', type=int, default=10)
  parser.add_argument('--data_seed', type=int, default=1)
  parser.add_argument('--defences', default=','.join(DEFENCES))
  args = parser.parse_args()
  fractions = [float(v) for v in args.fractions.split(',')]
  attacks = args.attacks.split(',')
  seeds = [int(v) for v in args.seeds.split(',')]
  base = RunConfig(**BASE, rounds=args.rounds, data_seed=args.data_seed)
  results, t0 = {}, time.perf_counter()
  for name in args.defences.split(','):
    results[name] = []
    run_defence(base, DEFENCES[name], attacks, fractions, seeds, results[name])
    print(f'{name}: done at {time.perf_counter() - t0:.0f}s', flush=True)
  print(write_outputs(args.out, results, attacks, fractions))
  print(f'total {time.perf_counter() - t0:.0f}s')


if __name__ == '__main__':
  main()
