"""Sweeps: settings that only change numbers or data run as one compiled program.

A sweep is the product of the sweep lists (sweep_axes.SWEEP_FLAGS). Lists of
kind 'traced' (threshold, seed, learning rate, the methods' numeric
parameters) and 'data' (imbalance ratio, data seed, attacker fraction, attack)
only change numbers or data, so every
combination of them becomes one slice of a leading axis S of the server state
and of HParams, and the round is `vmap`ped over it (with the clients `vmap`ped
inside): one program per *group*. The U distinct data sets are built once and
stacked (sweep_data); the points are data-major (S = U x R), and inside the
program each data set is repeated for its R points and the round vmapped
over S with the clients' in_axes 0; with U = 1 the clients are not stacked
and every point shares them (in_axes None). Lists of kind 'code'
(resampler, server optimizer, aggregator, loss, client optimizer, named
defence) change the program: one group per combination. A seed sets the model
initialisation and all client randomness; the data comes from the point's
data seed. The sweep axis is sharded over the devices of all processes
(`mesh_for`: as many as divide U, or S when U = 1, on the mesh's SWEEP axis,
the rest shard the clients); in a multi-host sweep every process runs the same
command, loads the client rows its devices hold, and process 0 writes the
workdir (every process takes part in the checkpoints). A point therefore
equals the single run `fedar_jax.main` with its settings as flags (e.g.
threshold t, seed s, data seed d, aggregator m, named defence n:
`--threshold=t --seed=s --data_seed=d --aggregator=m --defence=n`; see
sweep_data for when padding breaks the exact equality).

Workdir contents (besides the report's files):
  sweep.csv       one row per sweep point per round: the point's settings
                  (SETTING_COLUMNS), then every column of a single run's metrics.csv,
                  then the settings added after those (TRAILING_COLUMNS: the DP ones)
  sweep.json      the settings the workdir was started with (a rerun must match)
  checkpoints/G/  Orbax checkpoints of group G's stacked state (G: `group_name`,
                  e.g. 'smote', 'smote_median', 'fedar_median'); reruns resume
  tb/<point>/     TensorBoard events of each point (tensorboard_writer.point_dir: every
                  swept setting, e.g. imbalance_ratio=10,resampler=smote,seed=0), with
                  the point's settings as TensorBoard HParams

The next group is built and compiled in a background thread while the current
one runs; a group's rounds run in compiled calls of several rounds, through the driver
loop a single run uses (loop.run_calls: one point per sweep point).
"""
import concurrent.futures
import math
import os
import statistics
import time
from typing import Callable, NamedTuple


from fedar_jax import checkpoint
from fedar_jax import checkpoint_record
from fedar_jax import cohort_stream
from fedar_jax import distributed
from fedar_jax import progress as progress_lib
from fedar_jax import fedar_round
from fedar_jax import sharding
from fedar_jax import sweep_data
from fedar_jax import tensorboard_writer
from fedar_jax import loop
from fedar_jax import privacy_accounting
from fedar_jax import programs
from fedar_jax import train
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import RunConfig
from fedar_jax.sweep_programs import (make_sweep_prepare_clients, make_sweep_round,  # noqa: F401
                                      mesh_for, stack, sweep_mesh)
from fedar_jax.sweep_axes import (SETTING_COLUMNS, TRAILING_COLUMNS,  # noqa: F401 (re-exported)
                                  Group, SweepAxes, group_name, label_columns, make_groups,
                                  point_hparams, point_label, point_settings, trailing_settings)


def sweep_header(class_names, client_eval: bool = False) -> list[str]:
  """sweep.csv's columns: the settings, metrics.csv's columns up to epsilon, the trailing
  (DP) settings, then the client evaluation's columns (client_eval: --eval_clients > 0)."""
  metrics_header = loop.csv_header(class_names)
  return (list(SETTING_COLUMNS) + metrics_header + list(TRAILING_COLUMNS)
          + (list(loop.CLIENT_EVAL_COLUMNS) if client_eval else []))


def _old_row_tail(row) -> list[str]:
  """The cells a sweep.csv row kept from before the epsilon and DP columns lacks: epsilon
  inf (no DP) and the DP settings at their defaults."""
  del row
  return ['inf'] + trailing_settings(RunConfig)


def run_sweep(base: RunConfig, axes: SweepAxes, workdir: str, stream=None,
              data: sweep_data.SweepData | None = None, mesh=None,
              on_start: Callable[[], None] | None = None, settings: dict | None = None) -> dict:
  """Runs every group of the sweep for `base.rounds` rounds, appending to `workdir/sweep.csv`.

  Resumes each group from its newest intact checkpoint (sweep.csv is rewritten
  from the rows kept in the checkpoints); a finished group is neither built nor
  compiled. Progress goes to `stream` (default stderr). `data` and `mesh` are
  `sweep_data.build`'s result and its mesh (`mesh_for(axes)`), made here if
  not given. `on_start()` runs once the data is built, before anything is written.
  `settings`: what the checkpoints record and must match (`workdir.sweep_settings` of
  the command's lists; default: of `axes`' lists); checkpoints of another sweep, or
  edited ones, raise ConfigError before anything is written.

  Returns {'groups': [{'name', 'points', 'traces', 'compile_s', 'round_s', 'resumed_at'}]}:
  traces counts how often the group's round was traced (1: one compiled program).
  """
  groups = make_groups(base, axes)
  settings = settings or workdir_lib.sweep_settings(base, axes.lists)
  checkpoint_record.check_all(os.path.join(workdir, 'checkpoints'), settings, groups=True)
  writer_process = distributed.is_writer()
  mesh = mesh or mesh_for(axes)
  data = data or sweep_data.build(base, axes, mesh)
  ckpt_root = os.path.join(workdir, 'checkpoints')
  resume = {g.name: checkpoint.resume_point(os.path.join(ckpt_root, g.name),
                                           base.keep_checkpoints) for g in groups}
  width = len(sweep_header(data.sets[0].class_names))
  resume = {name: (step, loop.complete_rows(rows, width, _old_row_tail))
            for name, (step, rows) in resume.items()}
  done = {name: step for name, (step, _) in resume.items()}
  bar = progress_lib.Progress(len(groups) * base.rounds, len(groups) * axes.points_per_group,
                              stream=stream if writer_process else open(os.devnull, 'w'))
  todo = []
  for group in groups:
    start = min(done[group.name], base.rounds)
    bar.skip(start, len(group.points) if start == base.rounds else 0)
    if start < base.rounds:
      todo.append((group, start))
  if on_start is not None:
    on_start()
  report = []
  # Rewrite the rows kept in the checkpoints, then append (process 0 only).
  f, writer = workdir_lib.open_rows(
      os.path.join(workdir, 'sweep.csv') if writer_process else None,
      sweep_header(data.sets[0].class_names, base.eval_clients > 0),
      rows=[row for g in groups for row in resume[g.name][1]])
  with f:
    # The next group is built and compiled in a background thread while this one runs.
    compile_next = lambda item: _compile_group(*item, data, base, mesh, bar.stream)
    for index, ready in enumerate(ahead(todo, compile_next)):
      report.append(_run_group(ready, base, mesh, ckpt_root, settings, writer, f, bar,
                               place=f'{len(groups) - len(todo) + index + 1}/{len(groups)}',
                               rows=resume[ready.group.name][1], names=label_columns(axes)))
  return {'groups': report}


def gmean_label(cells: list[dict]) -> str:
  """'gmean best 0.912 mean 0.874': over a group's points in one round (cells: each
  point's metrics.csv cells); 'gmean nan' when none is finite."""
  values = [v for v in (float(c['gmean']) for c in cells) if math.isfinite(v)]
  if not values:
    return 'gmean nan'
  if len(values) == 1:
    return f'gmean {values[0]:.3f}'
  return f'gmean best {max(values):.3f} mean {statistics.fmean(values):.3f}'


def ahead(items: list, fn: Callable):
  """Yields fn(item) for the items in order; while the caller works on one result, the
  next is computed in a background thread (XLA compiles outside Python's lock)."""
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    future = pool.submit(fn, items[0]) if items else None
    for i in range(len(items)):
      result = future.result()
      future = pool.submit(fn, items[i + 1]) if i + 1 < len(items) else None
      yield result


def build_points(group: Group, data: sweep_data.SweepData, mesh) -> list[train.Experiment]:
  """Every point's Experiment, on its data set, with the sweep's resampler bound."""
  per_set = len(group.points) // group.num_data
  if data.source is not None:
    return [train.build_streamed(p, data.source, mesh, data.rows.layout.client_block)
            for p in group.points]
  return [train.build(p, data.sets[s // per_set], mesh=mesh,
                      max_class_count=data.max_class_count, rows=data.rows)
          for s, p in enumerate(group.points)]


class ReadyGroup(NamedTuple):
  """A group built and compiled: its stacked state, data, program and trace count; a
  streamed group's CohortSource, cohort size and per-client evaluation
  (`cohort_stream.client_evaluator`; else None, 0, None)."""
  group: Group
  start: int
  class_names: tuple
  state: fedar_round.ServerState
  hparams: fedar_round.HParams
  clients: object
  test: object
  program: programs.Program
  compile_s: float
  traces: list
  source: object = None
  per_round: int = 0
  evaluate: Callable | None = None


def _compile_group(group, start, data, base, mesh, stream=None) -> ReadyGroup:
  """Builds group's points (stacked on S, sharded) and compiles its program."""
  with progress_lib.stage(f'{group.name}: building', stream):
    exps = build_points(group, data, mesh)
  first = exps[0]
  state, hparams = sharding.shard_leading(
      (stack([e.state for e in exps]), stack([e.hparams for e in exps])), mesh)
  clients, test = data.clients, data.test
  traces = []

  def counted_sweep_round(spec, prepared):
    inner = make_sweep_round(spec, group.num_data, prepared)

    def sweep_round(*args):
      traces.append(1)  # Counts traces: one per compiled program.
      return inner(*args)
    return sweep_round

  t0 = time.perf_counter()
  with progress_lib.stage(f'{group.name}: compiling', stream):
    program = programs.compile_program(
        first.spec, block_length(base, data), base.resample_every, state, clients, test,
        hparams, sweep=counted_sweep_round,
        sweep_prepare_clients=lambda fn: make_sweep_prepare_clients(fn, group.num_data, mesh),
        options=programs.compiler_options(base.fast_compile),
        once_options=programs.once_compiler_options(streamed=data.source is not None))
  return ReadyGroup(group, start, first.data.class_names, state, hparams, clients, test, program,
                    time.perf_counter() - t0, traces, data.source, first.spec.num_clients,
                    cohort_stream.client_evaluator(first.spec, sweep=True)
                    if data.source is not None and base.eval_clients else None)


def block_length(base: RunConfig, data: sweep_data.SweepData) -> int:
  """Rounds per compiled call: `programs.block_length`'s, one for a streamed sweep (each
  round's cohort arrives on its own)."""
  return 1 if data.source is not None else programs.block_length(base)


def _run_group(ready: ReadyGroup, base, mesh, ckpt_root, sweep_settings, writer, f, bar, place,
               rows, names=('seed',)):
  """Runs a ready group's rounds start+1..base.rounds; returns its report dict.

  rows: the group's sweep.csv rows so far (from its checkpoint); extended here.
  sweep_settings: the sweep's settings (sweep.json), recorded in every checkpoint.
  place: the group's position among the sweep's groups ('3/23'), for the progress line.
  names: the setting columns naming each point's TensorBoard run (`label_columns`).
  """
  group, start, state, hparams, clients, test, program, compile_s, traces = (
      ready.group, ready.start, ready.state, ready.hparams, ready.clients, ready.test,
      ready.program, ready.compile_s, ready.traces)
  step, close = program.step, lambda: None
  if ready.source is not None:  # Each round's cohort streams in; the points share one seed.
    slots = clients.client_id.shape[0]
    spec = cohort_stream.StreamSpec(group.points[0].seed, ready.per_round, slots,
                                    hparams.attackers is not None, base.eval_clients,
                                    base.data_dtype)
    stream = cohort_stream.CohortStream(ready.source, spec, mesh, base.rounds)
    step = cohort_stream.StreamedStep(program, stream, start + 1,
                                      ready.evaluate if base.eval_clients else None)
    close = stream.close
  elif program.prepare_clients is not None:  # Per-point resampled rows [S, C, M, ...].
    clients = program.prepare_clients(clients, hparams)
  ckpt = checkpoint.Checkpoints(os.path.join(ckpt_root, group.name), base.keep_checkpoints,
                                sweep_settings)
  if start:
    state, _ = ckpt.restore(state, step=start)
  settings = [point_settings(p) for p in group.points]
  epsilons = [privacy_accounting.run_epsilons(p) for p in group.points]  # Cached per (q, z).
  header = loop.csv_header(ready.class_names, base.eval_clients > 0)
  tb_root = os.path.join(os.path.dirname(ckpt_root), 'tb')  # ckpt_root is DIR/checkpoints.
  tbs = [tensorboard_writer.ScalarWriter(os.path.join(tb_root, tensorboard_writer.point_dir(
      point_label(p, names))), start + 1, hparams=point_hparams(p)) for p in group.points]
  calls = loop.CallPlan(start, base.rounds, base.checkpoint_every,
                        1 if ready.source is not None else programs.block_length(base))

  def round_done(r, seconds, cells):
    bar.round_done(seconds, f'group {place} {group.name} round {r}/{base.rounds}  '
                   f'{gmean_label(cells)}', points_done=len(settings) if r == base.rounds else 0)
  try:
    _, _, times = loop.run_calls(step, state, (clients, test, hparams), calls, ckpt,
                                 loop.RowSink(f, writer, rows, header, settings, tbs, epsilons,
                                              [trailing_settings(p) for p in group.points]),
                                 round_done)
  finally:
    close()
    ckpt.close()  # Also after a signal: no checkpoint work is left for interpreter exit.
  return {'name': group.name, 'points': len(settings), 'traces': len(traces),
          'devices': dict(mesh.shape),
          'compile_s': compile_s, 'round_s': statistics.median(times), 'resumed_at': start}
