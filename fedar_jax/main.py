"""Command line: `python -m fedar_jax.main --workdir=DIR [--flagfile=F] [flags]`.

Every RunConfig field is a flag of the same name. Bad input exits with
status 2 and a one-line error naming the flag. One process at a time runs
in a workdir (WORKDIR/lock). SIGINT/SIGTERM end the run after the current
round with its checkpoint written (exit 130/143), a full disk ends it with
one line (exit 1); rerunning the same command resumes.
"""
import contextlib
import os
import sys

from fedar_jax import interrupts  # Light: the start-up signal handler goes in before JAX loads.
from fedar_jax import std_streams  # Light: stdlib only.
from fedar_jax import platforms

if __name__ == '__main__':
  std_streams.guard()
  interrupts.exit_while_starting()

from absl import app
from absl import flags
from absl import logging

from fedar_jax import checkpoint_record
from fedar_jax import cli
from fedar_jax import compile_cache
from fedar_jax import workdir as workdir_lib

FLAGS = flags.FLAGS

flags.DEFINE_string('workdir', None, 'Directory for metrics.csv and summary.json.')
flags.DEFINE_string('compilation_cache_dir', compile_cache.default_dir(),
                    'JAX persistent compilation cache (an identical rerun loads its compiled '
                    'programs instead of compiling); empty = off.')
cli.define_config_flags()


def main(argv):
  cli.no_arguments(argv)
  with cli.bad_input_fails():
    cfg = cli.config_from_flags()
    cli.refuse_idle_flags(cfg)
    workdir_lib.check_paths(FLAGS.workdir)
    workdir_lib.check_kind(FLAGS.workdir, 'config.json')
    settings = workdir_lib.run_settings(cfg)
    workdir_lib.check_resume(FLAGS.workdir, 'config.json', settings)
    checkpoint_record.check(os.path.join(FLAGS.workdir, 'checkpoints'), settings)
    workdir_lib.check_unlocked(FLAGS.workdir)
    compile_cache.check(FLAGS.compilation_cache_dir)
  logging.set_verbosity(logging.WARNING)  # No JAX start-up chatter before a data error.
  # JAX loads after the flags are checked, and before the run's signal handlers go in:
  # a signal that raised inside JAX's import would abort or be dropped.
  with cli.bad_input_fails():
    cli.split_cpu(cfg.cpu_devices)
  from fedar_jax import distributed
  from fedar_jax import loop
  cli.quiet_start(FLAGS.compilation_cache_dir)
  with cli.faults_reported(FLAGS.workdir or ''):
    with cli.bad_input_fails():
      built = loop.setup(cfg)  # Loads the data; nothing is written before this succeeds.
    logging.set_verbosity(logging.INFO)
    with cli.bad_input_fails(), (workdir_lib.lock(FLAGS.workdir) if distributed.is_writer()
                                 else contextlib.nullcontext()):
      summary = loop.train_and_evaluate(cfg, FLAGS.workdir, built)
    final = summary['final']
    round_s = (f"{summary['round_s']:.3f}s" if summary['round_s'] is not None
               else 'n/a (resumed a finished run)')
    print(f"final: accuracy {final['accuracy']:.4f}  gmean {final['gmean']:.4f}  "
          f"f1 {final['f1']:.4f}  compile {summary['compile_s']:.2f}s  "
          f"round {round_s}  -> {FLAGS.workdir}")
  std_streams.exit_if_stdout_lost(f'the run finished; its results are in {FLAGS.workdir}')


def run():
  """`python -m fedar_jax.main` (the console script `fedar-run`: console_scripts.run)."""
  platforms.skip_absent_tpu()  # Before JAX starts a backend.
  cli.exit_if_help(sys.argv, sys.modules[__name__])
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == '__main__':
  run()
