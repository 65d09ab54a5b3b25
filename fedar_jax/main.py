"""Command line: `python -m fedar_jax.main --workdir=DIR [--flagfile=F] [flags]`.

Every RunConfig field is a flag of the same name. Bad input exits with
status 2 and a one-line error naming the flag. One process at a time runs
in a workdir (WORKDIR/lock). SIGINT/SIGTERM end the run after the current
round with its checkpoint written (exit 130/143), a full disk ends it with
one line (exit 1); rerunning the same command resumes.
"""
import contextlib
import dataclasses
import errno
import os
import sys
import typing

from fedar_jax import interrupts  # Light: the start-up signal handler goes in before JAX loads.
from fedar_jax import platforms

if __name__ == '__main__':
  interrupts.exit_while_starting()

from absl import app
from absl import flags
from absl import logging

from fedar_jax import compile_cache
from fedar_jax import config as config_lib
from fedar_jax import defences
from fedar_jax import flagfiles
from fedar_jax import workdir as workdir_lib

FLAGS = flags.FLAGS


def define_config_flags(flag_values=FLAGS) -> None:
  """Defines one absl flag per RunConfig field (type from the annotation)."""
  hints = typing.get_type_hints(config_lib.RunConfig)
  for field in dataclasses.fields(config_lib.RunConfig):
    kind, help_text = hints[field.name], field.metadata.get('help', field.name)
    if kind is bool:
      flags.DEFINE_bool(field.name, field.default, help_text, flag_values=flag_values)
    elif kind is int:
      flags.DEFINE_integer(field.name, field.default, help_text, flag_values=flag_values)
    elif kind is float:
      flags.DEFINE_float(field.name, field.default, help_text, flag_values=flag_values)
    elif kind is str:
      flags.DEFINE_string(field.name, field.default, help_text, flag_values=flag_values)
    else:  # tuple[...]: comma-separated list
      flags.DEFINE_list(field.name, [str(v) for v in field.default], help_text,
                        flag_values=flag_values)


def config_from_flags(flag_values=FLAGS, host_memory: bool = True) -> config_lib.RunConfig:
  """Builds a validated RunConfig from parsed flags (raises ConfigError); host_memory as
  `config.validate`'s."""
  hints = typing.get_type_hints(config_lib.RunConfig)
  values = {}
  for field in dataclasses.fields(config_lib.RunConfig):
    value = flag_values[field.name].value
    if typing.get_origin(hints[field.name]) is tuple:
      elem = typing.get_args(hints[field.name])[0]
      try:
        value = tuple(elem(v) for v in value)
      except ValueError:
        raise config_lib.ConfigError(field.name, f'expected a comma-separated list of '
                                     f'{elem.__name__}, got {",".join(value)!r}')
    values[field.name] = value
  if values['latent_resampling'] != 'none' and not flag_values['resample_every'].present:
    # Latent resampling redraws encoder outputs every round; `once` applies to input rows.
    values['resample_every'] = 'round'
  if values['defence'] in defences.DEFENCES:  # A named defence sets its flags.
    for field, value in defences.flags_of(values['defence']).items():
      if flag_values[field].present and values[field] != value:
        raise config_lib.ConfigError('defence', f'{values["defence"]} sets --{field}={value}; '
                                     f'drop --{field}={flag_values[field].value}')
      values[field] = value
  return config_lib.validate(config_lib.RunConfig(**values), host_memory)


flags.DEFINE_string('workdir', None, 'Directory for metrics.csv and summary.json.')
flags.DEFINE_string('compilation_cache_dir', compile_cache.default_dir(),
                    'JAX persistent compilation cache (an identical rerun loads its compiled '
                    'programs instead of compiling); empty = off.')
define_config_flags()


def fail(message: str) -> None:
  """Prints a one-line error and exits with status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def parse_flags(argv):
  """absl flag parsing, with parse errors reported as one line and exit status 2."""
  try:
    return flagfiles.parse(FLAGS, argv)
  except flags.Error as e:
    fail(str(e))


def _disk_full(e: BaseException) -> bool:
  return ((isinstance(e, OSError) and e.errno == errno.ENOSPC)
          or 'No space left on device' in str(e))


@contextlib.contextmanager
def faults_reported(workdir: str):
  """Ends SIGINT/SIGTERM (130/143) and a full disk (1) with one line for the body.

  The round number printed is the one the rerun resumes after.
  """
  def rounds_done():
    directory = os.path.join(workdir, 'checkpoints')
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return max((int(n) for n in names if n.isdigit()), default=0)

  with interrupts.handled():
    try:
      yield
    except interrupts.Interrupted as e:
      print(e.message(rounds_done()), file=sys.stderr)
      interrupts.exit_quietly()
      sys.exit(e.exit_code)
    except Exception as e:  # Disk full surfaces as OSError or as Orbax/TensorStore errors.
      if not _disk_full(e):
        raise
      print(f'error: {workdir}: disk full ({type(e).__name__}) after round {rounds_done()}; '
            'free space and rerun the same command to resume', file=sys.stderr)
      sys.exit(1)


HELP_ARGS = ('-h', '-?', '--help', '--helpshort')


def flag_help(flag) -> str:
  """One flag as absl's --help shows it: '  --name: help' wrapped, then its default."""
  name = f'--[no]{flag.name}' if flag.boolean else f'--{flag.name}'
  lines = [flags.text_wrap(f'{name}: {flag.help}', indent='    ', firstline_indent='  '),
           f'    (default: {flag.default_as_str})']
  if flag.parser.syntactic_help:
    lines.append(f'    ({flag.parser.syntactic_help})')
  return '\n'.join(lines)


def help_text(*modules) -> str:
  """The first module's docstring, then each module's flags: RunConfig's under their
  group titles (config.GROUPS), in definition order."""
  fields = {f.name for f in dataclasses.fields(config_lib.RunConfig)}
  parts = [modules[0].__doc__.strip()]
  for module in modules:
    name = getattr(module.__spec__, 'name', module.__name__)
    own = [f for f in FLAGS.get_key_flags_for_module(module) if f.name not in fields]
    if own:
      parts.append(f'{name} flags:\n' + '\n'.join(flag_help(f) for f in own))
    if module is sys.modules[__name__]:
      for title, group in config_lib.groups():
        parts.append(f'{title} flags ({config_lib.GROUPS[title]}):\n'
                     + '\n'.join(flag_help(FLAGS[f.name]) for f in group))
  return '\n\n'.join(parts)


def print_quietly(text: str) -> None:
  """Prints `text`; a reader that stops early (`| head`) ends the output quietly."""
  try:
    print(text, flush=True)
  except BrokenPipeError:
    # Python would complain again flushing stdout at exit: point it at /dev/null.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def exit_if_help(argv, *modules) -> None:
  """On --help: prints `help_text(*modules)`, exits 0 (absl's own --help exits 1;
  --helpfull still lists absl's flags too)."""
  if not any(a in HELP_ARGS for a in argv[1:]):
    return
  print_quietly(help_text(*modules))
  sys.exit(0)


def main(argv):
  with faults_reported(FLAGS.workdir or ''):
    _main(argv)


def _main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    cfg = config_from_flags()
    workdir_lib.check_paths(FLAGS.workdir)
    workdir_lib.check_resume(FLAGS.workdir, 'config.json', cfg.to_dict())
    workdir_lib.check_unlocked(FLAGS.workdir)
  except config_lib.ConfigError as e:
    fail(str(e))
  from fedar_jax import checkpoint
  from fedar_jax import progress
  from fedar_jax import train  # Imports JAX; keep flag errors fast.
  compile_cache.enable(FLAGS.compilation_cache_dir)
  progress.use_short_log_format()
  checkpoint.quiet_orbax_logs()
  from fedar_jax.data.errors import DataError
  logging.set_verbosity(logging.WARNING)  # No JAX start-up chatter before a data error.
  try:
    prepared = train.setup(cfg)  # Loads the data; nothing is written before this succeeds.
  except (DataError, config_lib.ConfigError) as e:
    fail(str(e))
  logging.set_verbosity(logging.INFO)
  from fedar_jax import distributed
  try:
    with (workdir_lib.lock(FLAGS.workdir) if distributed.is_writer()
          else contextlib.nullcontext()):
      summary = train.train_and_evaluate(cfg, FLAGS.workdir, prepared)
  except config_lib.ConfigError as e:
    fail(str(e))
  final = summary['final']
  round_s = (f"{summary['round_s']:.3f}s" if summary['round_s'] is not None
             else 'n/a (resumed a finished run)')
  print(f"final: accuracy {final['accuracy']:.4f}  gmean {final['gmean']:.4f}  "
        f"f1 {final['f1']:.4f}  compile {summary['compile_s']:.2f}s  "
        f"round {round_s}  -> {FLAGS.workdir}")


def run():
  """Console script `fedar-run` (and `python -m fedar_jax.main`)."""
  platforms.skip_absent_tpu()  # Before JAX starts a backend.
  exit_if_help(sys.argv, sys.modules[__name__])
  app.run(main, flags_parser=parse_flags)


if __name__ == '__main__':
  run()
