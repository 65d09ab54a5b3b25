"""What every command shares: flags from RunConfig, one-line errors, fault reports and help.

Light to import (absl flags, the config, no JAX), so a command answers a bad
flag before it loads JAX. Bad input ends a command with `error: MESSAGE` and
exit status 2; `faults_reported` turns SIGINT/SIGTERM (130/143) and a full disk
(1) into one line.
"""
import contextlib
import dataclasses
import errno
import os
import sys
import typing

from absl import flags

from fedar_jax import config as config_lib
from fedar_jax import defences
from fedar_jax import flag_use
from fedar_jax import flagfiles
from fedar_jax import interrupts
from fedar_jax import platforms
from fedar_jax import std_streams
from fedar_jax import sweep_axes
from fedar_jax.data.errors import DataError

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
  `config.validate`'s (False: a plan for another machine)."""
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
  if values['population']:
    _population_values(values, flag_values)
  if values['partition'] == 'natural' and not flag_values['num_clients'].present:
    values['num_clients'] = _natural_clients(values)
  if values['latent_resampling'] != 'none' and not flag_values['resample_every'].present:
    # Latent resampling redraws encoder outputs every round; `once` applies to input rows.
    values['resample_every'] = 'round'
  if values['defence'] in defences.DEFENCES:  # A named defence sets its flags.
    config_lib.check_defence(values['defence'], {f: v for f, v in values.items()
                                                 if flag_values[f].present})
    values.update(defences.flags_of(values['defence']))
  cfg = config_lib.validate(config_lib.RunConfig(**values), host_memory)
  if cfg.population:
    from fedar_jax.data import population_store
    population_store.check_config(population_store.read_metadata(cfg.population), cfg,
                                  cfg.population)
  return cfg


def _population_values(values: dict, flag_values) -> None:
  """Fills, from the --population directory's metadata, every data flag not given (the
  flags it was written with; its data seed as --data_seed when that is not given).
  Given ones are checked against it with the config (`population_store.check_config`)."""
  from fedar_jax.data import population_store  # NumPy only.
  built = population_store.read_metadata(values['population']).get('flags', {})
  for name in population_store.population_fields():
    if name == 'seed' or name not in built or flag_values[name].present:
      continue
    if name == 'data_seed':
      values[name] = built['data_seed'] if built['data_seed'] >= 0 else built['seed']
    else:
      values[name] = tuple(built[name]) if isinstance(built[name], list) else built[name]


def _natural_clients(values: dict) -> int:
  """--partition=natural without --num_clients: one client per distinct id of the data
  file's client column (the --num_clients default where the file names none)."""
  from fedar_jax.data import latent_csv  # numpy only; not for the other commands' start.
  ids = None
  if values['dataset'] == 'latent_csv' and values['data_path']:
    ids = latent_csv.count_ids(values['data_path'], values['client_column'])
  return ids or values['num_clients']


def refuse_idle_flags(cfg: config_lib.RunConfig, flag_values=FLAGS, lists=None) -> None:
  """ConfigError naming a flag given explicitly that does nothing under `cfg` (and, in a
  sweep, the sweep `lists` as `sweep.sweep_lists` returns them): `flag_use.APPLIES`."""
  swept = {}
  for name, values in (lists or {}).items():
    swept.setdefault(sweep_axes.SWEEP_FLAGS[name].field, set()).update(values)
  for name in swept.get('defence', set()) | {cfg.defence}:  # A named defence sets its flags.
    for field, value in defences.flags_of(name).items():
      swept.setdefault(field, set()).add(value)

  def values(field):
    return {getattr(cfg, field)} | swept.get(field, set())
  given = [name for name in flag_use.APPLIES if name in flag_values and flag_values[name].present]
  flag_use.refuse_idle(given, values, lambda f: flag_values[f].value)


def fail(message: str) -> None:
  """Prints a one-line error and exits with status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


@contextlib.contextmanager
def bad_input_fails():
  """A ConfigError or DataError raised in the body ends the command with its one line
  and exit status 2 (`fail`)."""
  try:
    yield
  except (config_lib.ConfigError, DataError) as e:
    fail(str(e))


def no_arguments(argv) -> None:
  """Fails on positional arguments (every input is a flag)."""
  if len(argv) > 1:
    fail(f'unexpected arguments: {" ".join(argv[1:])}')


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
  """Ends SIGINT/SIGTERM (130/143) and a full disk (1) with one line for the body, the
  last: nothing printed after it (`std_streams.silence`).

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
      std_streams.silence()
      sys.exit(e.exit_code)
    except Exception as e:  # Disk full surfaces as OSError or as Orbax/TensorStore errors.
      if not _disk_full(e):
        raise
      print(f'error: {workdir}: disk full ({type(e).__name__}) after round {rounds_done()}; '
            'free space and rerun the same command to resume', file=sys.stderr)
      interrupts.exit_quietly()  # Libraries' threads and exit hooks fail on the full disk too.
      std_streams.silence()
      sys.exit(1)


def quiet_start(compilation_cache_dir: str) -> None:
  """What a command does once its flags are good, before it loads data: JAX's persistent
  compilation cache on, short log lines, no Orbax INFO lines (imports JAX and Orbax)."""
  from fedar_jax import checkpoint
  from fedar_jax import compile_cache
  from fedar_jax import progress
  compile_cache.enable(compilation_cache_dir)
  progress.use_short_log_format()
  checkpoint.quiet_orbax_logs()


def split_cpu(requested: int) -> int | None:
  """Makes JAX's CPU backend `platforms.cpu_device_count(requested)` devices
  (--cpu_devices), each running its share of a program on its own thread; a command calls
  it once its flags are checked, before JAX starts a backend. 1 leaves JAX's own count
  (one device, or what XLA_FLAGS forces). Returns the count set, or None where nothing
  was set. Imports JAX.

  Raises ConfigError naming --cpu_devices if JAX's backends already started in this
  process with another count.
  """
  if requested == 1:
    return None
  import jax
  count = platforms.cpu_device_count(requested)
  try:
    jax.config.update('jax_num_cpu_devices', count)
  except RuntimeError:
    if len(jax.devices('cpu')) == count:
      return count
    raise config_lib.ConfigError(
        'cpu_devices', f'{requested} cannot take effect: JAX already started its CPU '
        f'backend in this process with {len(jax.devices("cpu"))} device(s); pass it to a '
        'new process') from None
  return count


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
  """The first module's docstring, then each module's own flags, then RunConfig's
  flags under their group titles (config.GROUPS), in definition order."""
  fields = {f.name for f in dataclasses.fields(config_lib.RunConfig)}
  parts = [modules[0].__doc__.strip()]
  for module in modules:
    name = getattr(module.__spec__, 'name', module.__name__)
    own = [f for f in FLAGS.get_key_flags_for_module(module) if f.name not in fields]
    if own:
      parts.append(f'{name} flags:\n' + '\n'.join(flag_help(f) for f in own))
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
  print_help(help_text(*modules))
  sys.exit(0)


def print_help(text: str) -> None:
  """Prints a command's help: a reader that stops early (`| head`) ends it quietly; a
  stdout that cannot be written (a full device) ends the command with one line, exit 1."""
  print_quietly(text)
  if not isinstance(getattr(sys.stdout, 'lost', None), BrokenPipeError):
    std_streams.exit_if_stdout_lost('the help was not shown')
