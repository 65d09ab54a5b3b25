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
                  (SETTING_COLUMNS), then every column of a single run's metrics.csv
  sweep.json      the settings the workdir was started with (a rerun must match)
  checkpoints/G/  Orbax checkpoints of group G's stacked state (G: `group_name`,
                  e.g. 'smote', 'smote_median', 'fedar_median'); reruns resume
  tb/<point>/     TensorBoard events of each point (tensorboard_writer.point_dir)

The next group is built and compiled in a background thread while the current
one runs; a group's rounds run in compiled calls of several rounds, through the driver
loop a single run uses (loop.run_calls: one point per sweep point).
"""
import concurrent.futures
import os
import statistics
import time
from typing import Callable, NamedTuple


from fedar_jax import checkpoint
from fedar_jax import cohort_stream
from fedar_jax import distributed
from fedar_jax import progress as progress_lib
from fedar_jax import fedar_round
from fedar_jax import sharding
from fedar_jax import sweep_data
from fedar_jax import tensorboard_writer
from fedar_jax import loop
from fedar_jax import programs
from fedar_jax import train
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import RunConfig
from fedar_jax.sweep_programs import (make_sweep_prepare_clients, make_sweep_round,  # noqa: F401
                                      mesh_for, stack, sweep_mesh)
from fedar_jax.sweep_axes import (SETTING_COLUMNS, Group, SweepAxes,  # noqa: F401 (re-exported)
                                  group_name, make_groups, point_label, point_settings)


def sweep_header(class_names, client_eval: bool = False) -> list[str]:
  return list(SETTING_COLUMNS) + loop.csv_header(class_names, client_eval)


def run_sweep(base: RunConfig, axes: SweepAxes, workdir: str, stream=None,
              data: sweep_data.SweepData | None = None, mesh=None,
              on_start: Callable[[], None] | None = None) -> dict:
  """Runs every group of the sweep for `base.rounds` rounds, appending to `workdir/sweep.csv`.

  Resumes each group from its newest intact checkpoint (sweep.csv is rewritten
  from the rows kept in the checkpoints); a finished group is neither built nor
  compiled. Progress goes to `stream` (default stderr). `data` and `mesh` are
  `sweep_data.build`'s result and its mesh (`mesh_for(axes)`), made here if
  not given. `on_start()` runs once the data is built, before anything is written.

  Returns {'groups': [{'name', 'points', 'traces', 'compile_s', 'round_s', 'resumed_at'}]}:
  traces counts how often the group's round was traced (1: one compiled program).
  """
  groups = make_groups(base, axes)
  writer_process = distributed.is_writer()
  mesh = mesh or mesh_for(axes)
  data = data or sweep_data.build(base, axes, mesh)
  ckpt_root = os.path.join(workdir, 'checkpoints')
  resume = {g.name: checkpoint.resume_point(os.path.join(ckpt_root, g.name),
                                           base.keep_checkpoints) for g in groups}
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
      report.append(_run_group(ready, base, mesh, ckpt_root, writer, f, bar,
                               groups_left=len(todo) - index - 1,
                               rows=resume[ready.group.name][1]))
  return {'groups': report}


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
        options=programs.compiler_options(base.fast_compile))
  return ReadyGroup(group, start, first.data.class_names, state, hparams, clients, test, program,
                    time.perf_counter() - t0, traces, data.source, first.spec.num_clients,
                    cohort_stream.client_evaluator(first.spec, sweep=True)
                    if data.source is not None and base.eval_clients else None)


def block_length(base: RunConfig, data: sweep_data.SweepData) -> int:
  """Rounds per compiled call: `programs.block_length`'s, one for a streamed sweep (each
  round's cohort arrives on its own)."""
  return 1 if data.source is not None else programs.block_length(base)


def _run_group(ready: ReadyGroup, base, mesh, ckpt_root, writer, f, bar, groups_left, rows):
  """Runs a ready group's rounds start+1..base.rounds; returns its report dict.

  rows: the group's sweep.csv rows so far (from its checkpoint); extended here.
  """
  group, start, state, hparams, clients, test, program, compile_s, traces = (
      ready.group, ready.start, ready.state, ready.hparams, ready.clients, ready.test,
      ready.program, ready.compile_s, ready.traces)
  step, close = program.step, lambda: None
  if ready.source is not None:  # Each round's cohort streams in; the points share one seed.
    slots = clients.client_id.shape[0]
    spec = cohort_stream.StreamSpec(group.points[0].seed, ready.per_round, slots,
                                    hparams.attackers is not None, base.eval_clients)
    stream = cohort_stream.CohortStream(ready.source, spec, mesh, base.rounds)
    step = cohort_stream.StreamedStep(program, stream, start + 1,
                                      ready.evaluate if base.eval_clients else None)
    close = stream.close
  elif program.prepare_clients is not None:  # Per-point resampled rows [S, C, M, ...].
    clients = program.prepare_clients(clients, hparams)
  bar.compiled(compile_s)
  ckpt = checkpoint.Checkpoints(os.path.join(ckpt_root, group.name), base.keep_checkpoints)
  if start:
    state, _ = ckpt.restore(state, step=start)
  settings = [point_settings(p) for p in group.points]
  header = loop.csv_header(ready.class_names, base.eval_clients > 0)
  tb_root = os.path.join(os.path.dirname(ckpt_root), 'tb')  # ckpt_root is DIR/checkpoints.
  tbs = [tensorboard_writer.ScalarWriter(os.path.join(tb_root, tensorboard_writer.point_dir(
      point_label(p))), start + 1) for p in group.points]
  calls = loop.CallPlan(start, base.rounds, base.checkpoint_every,
                        1 if ready.source is not None else programs.block_length(base))

  def round_done(r, seconds, cells):
    bar.round_done(seconds, f'group {group.name} round {r}/{base.rounds}', groups_left,
                   points_done=len(settings) if r == base.rounds else 0)
  try:
    _, _, times = loop.run_calls(step, state, (clients, test, hparams), calls, ckpt,
                                 loop.RowSink(f, writer, rows, header, settings, tbs), round_done)
  finally:
    close()
  ckpt.close()
  return {'name': group.name, 'points': len(settings), 'traces': len(traces),
          'devices': dict(mesh.shape),
          'compile_s': compile_s, 'round_s': statistics.median(times), 'resumed_at': start}
