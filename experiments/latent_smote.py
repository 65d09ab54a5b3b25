"""Latent SMOTE vs no resampling for a CNN on generated FER2013-format faces at IR 10.

Writes a FER2013-format CSV of generated 48x48 faces whose class (Happy or
Sad) is visible in the pixels, then runs the CLI's training path with
--model=cnn --latent_resampling=joint, every client at IR 10 with Sad its
minority (--imbalance_order=fixed), once with --resampler=smote and once with
--resampler=none, for each seed. Prints one JSON line per run and a summary
of the minority (Sad) recall.

  python experiments/latent_smote.py [--seeds=0,1] [--rounds=10] [--quick]
"""
import argparse
import json
import os
import statistics
import tempfile

from fedar_jax import loop
from fedar_jax.config import RunConfig, validate
from fedar_jax.data.pattern_faces import write_fer2013_csv


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--seeds', default='0,1')
  parser.add_argument('--rounds', type=int, default=10)
  parser.add_argument('--clients', type=int, default=5)
  parser.add_argument('--image_size', type=int, default=16)
  parser.add_argument('--noise', type=float, default=0.35)
  parser.add_argument('--quick', action='store_true', help='tiny sizes (smoke test)')
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  rounds, clients, size = (2, 2, 8) if args.quick else (args.rounds, args.clients,
                                                        args.image_size)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'faces.csv')
    # Happy (3) and Sad (4): enough rows for every client at 100 + 10, plus the test set.
    write_fer2013_csv(path, seed=123, per_class=[100 * clients + 200, 10 * clients + 200],
                      emotions=(3, 4), noise=args.noise)
    recall = {'smote': [], 'none': []}
    for seed in seeds:
      for resampler in ('smote', 'none'):
        cfg = validate(RunConfig(
            dataset='fer2013', data_path=path, classes=('Happy', 'Sad'), image_size=size,
            model='cnn', latent_resampling='joint', resample_every='round', cnn_channels=(8, 16),
            latent_dim=32, hidden=(16,), num_clients=clients, partition='imbalance',
            imbalance_order='fixed',
            samples_per_client=110, imbalance_ratio=10.0, test_per_class=200,
            rounds=rounds, local_epochs=2, batch_size=32, learning_rate=3e-3,
            resampler=resampler, threshold=1.5, seed=seed))
        summary = loop.train_and_evaluate(cfg, os.path.join(tmp, f'{resampler}_{seed}'))
        final = summary['final']
        recall[resampler].append(final['recall']['Sad'])
        print(json.dumps({'seed': seed, 'resampler': resampler, 'recall_Sad': final['recall']['Sad'],
                          'recall_Happy': final['recall']['Happy'], 'gmean': final['gmean'],
                          'round_s': summary['round_s']}), flush=True)
  print(json.dumps({'mean_recall_Sad': {k: statistics.mean(v) for k, v in recall.items()},
                    'seeds': seeds, 'rounds': rounds, 'clients': clients, 'image_size': size}))


if __name__ == '__main__':
  main()
