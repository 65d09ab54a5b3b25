"""Command line: `python -m fedar_jax.sweep --workdir=DIR --thresholds=1,1.5,2 --seeds=0,1,2 [flags]`.

Sweep lists (sweep_axes.SWEEP_FLAGS): --thresholds, --seeds, --learning_rates
and the methods' numeric parameters (--server_learning_rates, --prox_mus,
--focal_gammas, --trim_fractions, ...: traced numbers) and --imbalance_ratios,
--data_seeds, --attacker_fractions, --attacks (stacked data) run as one
compiled program per group; --resamplers, --aggregators, --server_optimizers,
--losses, --client_optimizers and --defences (code; docs/defences.md) make a
group per combination. An empty list means the single value of --threshold,
--seed, ... Every run flag of `fedar_jax.main` applies to every
point; with --population=DIR the traced and code lists run on cohorts streamed
from it (data lists and several seeds are refused). Writes DIR/sweep.csv,
DIR/summary.csv, DIR/plots/*.png and DIR/report.md; rerunning the same command resumes. Bad input (a bad list
value, data that cannot be built, a sweep whose stacked data would not fit in
memory) exits with status 2 and a one-line error before anything is written;
faults (a second process, SIGINT/SIGTERM, a full disk) are handled as in
`fedar_jax.main`.
"""
import contextlib
import dataclasses
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
from fedar_jax import config as config_lib
from fedar_jax import defences
from fedar_jax import main as main_lib  # Defines --workdir and one flag per RunConfig field.
from fedar_jax import workdir as workdir_lib
from fedar_jax import sweep_axes
from fedar_jax.sweep_axes import SWEEP_FLAGS

FLAGS = flags.FLAGS

for _name, _entry in SWEEP_FLAGS.items():
  flags.DEFINE_list(_name, [], _entry.help)


def sweep_lists(flag_values, base: config_lib.RunConfig, host_memory: bool = True) -> dict:
  """Parses and validates the sweep flags; raises ConfigError naming the sweep flag.

  Each value is checked alone (with `config.validate`, and a named defence's
  flags set), then every point of the sweep (the same validation, so
  combinations such as Krum's f against the clients per round are checked too).
  host_memory: as `config.validate`'s.
  """
  lists = {}
  for name, entry in SWEEP_FLAGS.items():
    raw = flag_values[name].value
    kind = entry.type
    try:
      values = tuple(kind(v) for v in raw)
    except ValueError:
      raise config_lib.ConfigError(name, f'expected a comma-separated list of {kind.__name__}, '
                                   f'got {",".join(raw)!r}')
    if len(set(values)) != len(values):
      raise config_lib.ConfigError(name, f'repeats a value: {",".join(raw)}')
    if name == 'data_seeds' and any(v < 0 for v in values):
      raise config_lib.ConfigError(name, f'must be >= 0, got {",".join(raw)} (-1 would tie '
                                   'the data to --seeds)')
    if name == 'attacks' and 'scale' in values and len(values) > 1:
      raise config_lib.ConfigError(name, 'scale changes the round (scaled updates); sweep it '
                                   'in its own command')
    for value in values:
      try:
        config_lib.validate(defences.apply(base.replace(**{entry.field: value})), host_memory)
      except config_lib.ConfigError as e:
        if e.flag != entry.field:
          raise config_lib.ConfigError(e.flag, f'{_message(e)} (with --{name}={value})') from None
        raise config_lib.ConfigError(name, _message(e)) from None
    lists[name] = values
  _check_population(base, lists)
  _check_defences(flag_values, base, lists)
  _check_points(base, lists, host_memory)
  return lists


def _check_population(base: config_lib.RunConfig, lists: dict) -> None:
  """A --population or a virtual population is one data set sampled with one --seed:
  refuses data lists and more than one seed, saying what to run instead."""
  if not base.population and not config_lib.is_virtual(base):
    return
  data = [n for n in sweep_axes.flags_of(sweep_axes.DATA) if lists.get(n)]
  if not base.population and (data or len(lists.get('seeds', ())) > 1):
    raise config_lib.ConfigError(data[0] if data else 'seeds', 'a virtual population is one '
                                 'data set, sampled with one --seed; run one sweep per value')
  if data:
    field = SWEEP_FLAGS[data[0]].field
    raise config_lib.ConfigError(data[0], f'--population={base.population} is one data set; '
                                 f'write one population per value (fedar-population '
                                 f'--out=DIR --{field}=VALUE) and sweep each')
  if len(lists.get('seeds', ())) > 1:
    raise config_lib.ConfigError('seeds', f'--population={base.population} streams one '
                                 'cohort per round, sampled with --seed; run one sweep per '
                                 'seed')


def _message(e: config_lib.ConfigError) -> str:
  return str(e).split(': ', 1)[1]


def _check_defences(flag_values, base: config_lib.RunConfig, lists: dict) -> None:
  """Refuses a named defence that would override a flag given with another value, or a
  sweep list of a field it sets."""
  names = lists.get('defences') or ((base.defence,) if base.defence else ())
  for defence in names:
    for field in defences.flags_of(defence):
      listed = [n for n, e in SWEEP_FLAGS.items() if e.field == field and lists.get(n)]
      if listed:
        raise config_lib.ConfigError(listed[0], f'{field} is set by the defence {defence}; '
                                     'sweep one or the other')
  given = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)
           if f.name in flag_values and flag_values[f.name].present}
  for defence in lists.get('defences', ()):
    config_lib.check_defence(defence, given, 'defences')


def _check_points(base: config_lib.RunConfig, lists: dict, host_memory: bool = True) -> None:
  """Validates every point of the sweep; an error names the sweep list of its field, or
  the flag and the point's swept values."""
  axes = sweep_axes.SweepAxes.of(base, **lists)
  swept = {e.field: n for n, e in SWEEP_FLAGS.items() if lists.get(n)}
  for group in sweep_axes.make_groups(base, axes):
    for point in group.points:
      try:
        config_lib.validate(point, host_memory)
      except config_lib.ConfigError as e:
        values = ', '.join(f'--{n}={sweep_axes.format_value(getattr(point, f))}'
                           for f, n in swept.items())
        raise config_lib.ConfigError(swept.get(e.flag, e.flag),
                                     f'{_message(e)} (at {values})') from None


def main(argv):
  cli.no_arguments(argv)
  with cli.bad_input_fails():
    base = cli.config_from_flags()
    workdir_lib.check_paths(FLAGS.workdir)
    workdir_lib.check_kind(FLAGS.workdir, 'sweep.json')
    lists = sweep_lists(FLAGS, base)
    cli.refuse_idle_flags(base, FLAGS, lists)
    settings = workdir_lib.sweep_settings(base, lists)
    workdir_lib.check_resume(FLAGS.workdir, 'sweep.json', settings)
    checkpoint_record.check_all(os.path.join(FLAGS.workdir, 'checkpoints'), settings,
                                groups=True)
    workdir_lib.check_unlocked(FLAGS.workdir)
    compile_cache.check(FLAGS.compilation_cache_dir)
  logging.set_verbosity(logging.WARNING)
  # JAX and the sweep's modules load after the flags are checked, and before the sweep's
  # signal handlers go in (as in fedar_jax.main).
  with cli.bad_input_fails():
    cli.split_cpu(base.cpu_devices)
  from fedar_jax import report, sweep_runner  # noqa: F401
  # Groups whose programs repeat (and reruns) load them from the cache.
  cli.quiet_start(FLAGS.compilation_cache_dir)
  with cli.faults_reported(FLAGS.workdir or ''):
    _sweep(base, lists, settings)


def _sweep(base: config_lib.RunConfig, lists: dict, settings: dict) -> None:
  import jax
  from fedar_jax import distributed
  from fedar_jax import memory_estimate
  from fedar_jax import progress
  from fedar_jax import report
  from fedar_jax import sweep_data
  from fedar_jax import sweep_runner
  # Multi-host: every process runs this same command; process 0 writes the workdir.
  distributed.initialize(base.coordinator_address, base.num_processes, base.process_id,
                         base.coordinator_timeout_s)
  writer = distributed.is_writer()
  axes = sweep_runner.SweepAxes.of(base, **lists)
  mesh = sweep_runner.mesh_for(axes)
  with cli.bad_input_fails():  # Builds (and checks) every data set; nothing is written before.
    memory_estimate.check_before_loading(base)  # Image and model flags are not swept.
    with progress.stage('loading data'):
      if base.population:
        from fedar_jax import cohort_stream
        data = sweep_data.build_streamed(base, cohort_stream.population_source(base), mesh)
      elif config_lib.is_virtual(base):
        from fedar_jax.data import virtual_population
        data = sweep_data.build_streamed(base, virtual_population.source(base), mesh)
      else:
        data = sweep_data.build(base, axes, mesh)
  with contextlib.ExitStack() as held:

    def start():  # The data has loaded: take the workdir, record the settings.
      if writer:
        held.enter_context(workdir_lib.lock(FLAGS.workdir))
        workdir_lib.check_resume(FLAGS.workdir, 'sweep.json', settings)
        workdir_lib.save_settings(FLAGS.workdir, 'sweep.json', settings)

    # A signal is acted on at the end of the current call, with its checkpoint.
    with cli.bad_input_fails(), interrupts.deferred(enabled=jax.process_count() == 1):
      result = sweep_runner.run_sweep(base, axes, FLAGS.workdir, data=data, mesh=mesh,
                                      on_start=start, settings=settings)
    if not writer:
      return
    outputs = report.write_report(FLAGS.workdir)
  for g in result['groups']:
    resumed = f" (resumed at round {g['resumed_at']})" if g['resumed_at'] else ''
    print(f"group {g['name']}: {g['points']} points in one program, compile "
          f"{g['compile_s']:.2f}s, {g['round_s']:.3f}s per round{resumed}")
  print(f"wrote {', '.join(outputs)}")
  std_streams.exit_if_stdout_lost(f'the sweep finished; its results are in {FLAGS.workdir}')


def run():
  """`python -m fedar_jax.sweep` (the console script `fedar-sweep`: console_scripts.sweep)."""
  platforms.skip_absent_tpu()  # Before JAX starts a backend.
  cli.exit_if_help(sys.argv, sys.modules[__name__], main_lib)
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == '__main__':
  run()
