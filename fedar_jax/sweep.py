"""Command line: `python -m fedar_jax.sweep --workdir=DIR --thresholds=1,1.5,2 --seeds=0,1,2 [flags]`.

Sweep lists: --thresholds, --seeds, --learning_rates (one compiled program
over a sweep axis) and --imbalance_ratios, --resamplers (an outer loop). An
empty list means the single value of --threshold, --seed, ... Every run flag
of `fedar_jax.main` applies to every point. Writes DIR/sweep.csv,
DIR/summary.csv, DIR/plots/*.png and DIR/report.md; rerunning the same
command resumes. Bad input exits with status 2 and a one-line error, before
anything is written; faults (a second process, SIGINT/SIGTERM, a full disk)
are handled as in `fedar_jax.main`.
"""
import contextlib
import sys

from fedar_jax import interrupts  # Light: installs the start-up signal handler before JAX loads.

if __name__ == '__main__':
  interrupts.exit_while_starting()

from absl import app
from absl import flags
from absl import logging

from fedar_jax import compile_cache
from fedar_jax import config as config_lib
from fedar_jax import main as main_lib  # Defines --workdir and one flag per RunConfig field.
from fedar_jax import workdir as workdir_lib

FLAGS = flags.FLAGS

# Sweep flag -> (RunConfig field it lists, element type).
SWEEP_FLAGS = {
    'thresholds': ('threshold', float),
    'seeds': ('seed', int),
    'learning_rates': ('learning_rate', float),
    'imbalance_ratios': ('imbalance_ratio', float),
    'resamplers': ('resampler', str),
}
flags.DEFINE_list('thresholds', [], 'FedAR thresholds to sweep (sweep axis); default --threshold.')
flags.DEFINE_list('seeds', [], 'Seeds to sweep (sweep axis: initialisation and client '
                  'randomness; the data comes from --data_seed, or --seed); default --seed.')
flags.DEFINE_list('learning_rates', [], 'Learning rates to sweep (sweep axis); default '
                  '--learning_rate.')
flags.DEFINE_list('imbalance_ratios', [], 'Imbalance ratios to sweep (outer loop: new data); '
                  'default --imbalance_ratio.')
flags.DEFINE_list('resamplers', [], 'Resamplers to sweep (outer loop: new code); default '
                  '--resampler.')


def sweep_lists(flag_values, base: config_lib.RunConfig) -> dict:
  """Parses and validates the sweep flags; raises ConfigError naming the sweep flag."""
  lists = {}
  for name, (field, kind) in SWEEP_FLAGS.items():
    raw = flag_values[name].value
    try:
      values = tuple(kind(v) for v in raw)
    except ValueError:
      raise config_lib.ConfigError(name, f'expected a comma-separated list of {kind.__name__}, '
                                   f'got {",".join(raw)!r}')
    if len(set(values)) != len(values):
      raise config_lib.ConfigError(name, f'repeats a value: {",".join(raw)}')
    for value in values:
      try:
        config_lib.validate(base.replace(**{field: value}))
      except config_lib.ConfigError as e:
        if e.flag != field:
          raise
        raise config_lib.ConfigError(name, str(e).split(': ', 1)[1]) from None
    lists[name] = values
  return lists


def main(argv):
  with main_lib.faults_reported(FLAGS.workdir or ''):
    _main(argv)


def _main(argv):
  if len(argv) > 1:
    main_lib.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    base = main_lib.config_from_flags()
    workdir_lib.check_paths(FLAGS.workdir)
    lists = sweep_lists(FLAGS, base)
    settings = {**base.to_dict(), **{k: list(v) for k, v in lists.items()}}
    workdir_lib.check_resume(FLAGS.workdir, 'sweep.json', settings)
    workdir_lib.check_unlocked(FLAGS.workdir)
  except config_lib.ConfigError as e:
    main_lib.fail(str(e))
  logging.set_verbosity(logging.WARNING)
  # Groups whose programs repeat (and reruns) load them from the cache.
  compile_cache.enable(FLAGS.compilation_cache_dir)
  from fedar_jax import progress
  from fedar_jax import report
  progress.use_short_log_format()
  from fedar_jax import sweep_runner
  from fedar_jax.data.errors import DataError
  axes = sweep_runner.SweepAxes.of(base, **lists)
  with contextlib.ExitStack() as held:

    def start():  # The first group's data has loaded: take the workdir, record the settings.
      held.enter_context(workdir_lib.lock(FLAGS.workdir))
      workdir_lib.check_resume(FLAGS.workdir, 'sweep.json', settings)
      workdir_lib.save_settings(FLAGS.workdir, 'sweep.json', settings)

    try:  # A signal is acted on at the end of the current round, with its checkpoint.
      with interrupts.deferred():
        result = sweep_runner.run_sweep(base, axes, FLAGS.workdir, on_start=start)
    except (DataError, config_lib.ConfigError) as e:
      main_lib.fail(str(e))
    outputs = report.write_report(FLAGS.workdir)
  for g in result['groups']:
    print(f"group {g['name']}: {g['points']} points in one program, compile "
          f"{g['compile_s']:.2f}s, {g['round_s']:.3f}s per round (resumed at round "
          f"{g['resumed_at']})")
  print(f"wrote {', '.join(outputs)}")


def run():
  """Console script `fedar-sweep` (and `python -m fedar_jax.sweep`)."""
  main_lib.exit_if_help(sys.argv, sys.modules[__name__], main_lib)
  app.run(main, flags_parser=main_lib.parse_flags)


if __name__ == '__main__':
  run()
