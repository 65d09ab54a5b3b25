"""Benchmarks: prints one JSON line per setting.

  python experiments/benchmark.py                       # every section
  python experiments/benchmark.py --sections=round      # a subset

Each section is a module `experiments/benchmark_<section>.py` with a
`run(args) -> iterable of dicts`; this script prints each dict as a JSON line.
"""
import argparse
import importlib
import json

from fedar_jax import platforms

SECTIONS = ('round', 'resamplers', 'sweep', 'scale', 'devices', 'data', 'study', 'plan',
            'population', 'cpu_devices', 'torch')


def main():
  # No TPU start-up where libtpu is installed but no TPU is attached (this process and the
  # runs it starts), as the commands do.
  platforms.skip_absent_tpu()
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--sections', default=','.join(SECTIONS),
                      help=f'comma-separated subset of: {", ".join(SECTIONS)}')
  parser.add_argument('--quick', action='store_true', help='small sizes (smoke test)')
  parser.add_argument('--clients', type=int, default=None,
                      help='resamplers: clients (default 1000; --quick 20)')
  parser.add_argument('--round_clients', default=None,
                      help='round: comma-separated client counts (default 10,100,1000; '
                           '--quick 10,100); the reference loop runs up to 1,000')
  parser.add_argument('--round_dtypes', default='float32',
                      help='round: comma-separated --data_dtype values, each timed on the '
                           'same clients, their rounds interleaved (e.g. float32,bfloat16)')
  parser.add_argument('--round_resample', default='round', choices=('round', 'once'),
                      help='round: resample in every timed round (round) or once before '
                           'them, as a run with --resample_every=once trains (once)')
  parser.add_argument('--round_repeats', type=int, default=None,
                      help='round: timed rounds per setting (default 10; 3 from C = 1,000)')
  parser.add_argument('--cpu_devices', default=None,
                      help='cpu_devices: comma-separated --cpu_devices values, each run in '
                           'fresh processes, interleaved (default 1,0: one device, one per '
                           'core)')
  parser.add_argument('--torch_workers', type=int, default=None,
                      help='torch: worker processes of the PyTorch clients (default: one per '
                           'core)')
  parser.add_argument('--compare_python', default='',
                      help='torch: a Python with torch, flwr[simulation] and imbalanced-learn '
                           '(a venv of its own; benchmark_torch.py) that runs the paper\'s stack')
  parser.add_argument('--ref_clients', type=int, default=None,
                      help='resamplers: clients the imbalanced-learn loop is timed on, '
                           'extrapolated to --clients (default 50)')
  parser.add_argument('--samplers', default=None,
                      help='resamplers: comma-separated subset of sampler names')
  parser.add_argument('--study_points', type=int, default=None,
                      help='study: points of the grid run as separate fedar_jax.main '
                           'runs, extrapolated to the grid (default 4; --quick 2)')
  parser.add_argument('--plan_clients', type=int, default=None,
                      help='plan: clients of the run measured against its local plan '
                           '(default 1000; --quick 40)')
  parser.add_argument('--plan_targets', default='v5e:4x4,v6e:16x16',
                      help='plan: TPU topologies the presets are planned for (empty: none)')
  parser.add_argument('--plan_presets', default='imr_study.flags,attack_study.flags',
                      help='plan: flagfiles of experiments/paper/ planned for each target')
  parser.add_argument('--population_dir', default='',
                      help='population: where the population is written (default: a '
                           'temporary directory)')
  parser.add_argument('--population_baseline', type=int, default=None,
                      help='population: clients the in-memory generation is timed on, '
                           'extrapolated (default 131072; --quick 4000)')
  parser.add_argument('--population_keep', action='store_true',
                      help='population: keep the population written')
  parser.add_argument('--population_reuse', action='store_true',
                      help='population: stream a complete population already under '
                           '--population_dir instead of writing it (kept afterwards)')
  parser.add_argument('--population_repeats', type=int, default=None,
                      help='population: interleaved repeats of each streamed / in-memory '
                           'pair of runs (default 3; --quick 1)')
  args = parser.parse_args()
  for name in args.sections.split(','):
    if name not in SECTIONS:
      parser.error(f'--sections: unknown section {name!r}; allowed: {", ".join(SECTIONS)}')
    module = importlib.import_module(f'benchmark_{name}')
    for record in module.run(args):
      print(json.dumps({'section': name, **record}), flush=True)


if __name__ == '__main__':
  main()
