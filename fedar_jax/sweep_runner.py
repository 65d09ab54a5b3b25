"""Sweeps: settings that only change numbers run as one compiled program over a sweep axis.

A sweep is the product of five lists. Threshold, seed and learning rate only
change numbers, so every combination of them becomes one slice of a leading
axis S of the server state and of HParams, and the round is `vmap`ped over it
(with the clients `vmap`ped inside): one program per *group*. Imbalance ratio
and resampler change the data or the code, so they loop outside, one group
each. Seeds share one data set (drawn with the base config's
`effective_data_seed`); a seed sets the model initialisation and all client
randomness. The sweep axis is sharded over the devices (`sweep_mesh`: as many
as divide S on the mesh's SWEEP axis, the rest shard the clients); sweeps run
in one process. Point (threshold t, seed s, learning rate l) of a group therefore
equals the single run `fedar_jax.main --threshold=t --seed=s --learning_rate=l
--data_seed=<data seed>` with the group's imbalance ratio and resampler.

Workdir contents (besides the report's files):
  sweep.csv       one row per sweep point per round: the point's settings, then
                  every column of a single run's metrics.csv
  sweep.json      the settings the workdir was started with (a rerun must match)
  checkpoints/G/  Orbax checkpoints of group G's stacked state; reruns resume
  tb/<point>/     TensorBoard events of each point (tensorboard_writer.point_dir)
"""
import concurrent.futures
import dataclasses
import math
import os
import statistics
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedar_jax import checkpoint
from fedar_jax import interrupts
from fedar_jax import progress as progress_lib
from fedar_jax import round as round_lib
from fedar_jax import sharding
from fedar_jax import tensorboard_writer
from fedar_jax import train
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import RunConfig

# sweep.csv columns that name a point, ahead of the metrics columns.
SETTING_COLUMNS = ('imbalance_ratio', 'resampler', 'threshold', 'seed', 'learning_rate')


@dataclasses.dataclass(frozen=True)
class SweepAxes:
  """The values swept. Outer (one group each): imbalance_ratios x resamplers.
  Inner (the axis S, one program): thresholds x seeds x learning_rates."""
  thresholds: tuple[float, ...]
  seeds: tuple[int, ...]
  learning_rates: tuple[float, ...]
  imbalance_ratios: tuple[float, ...]
  resamplers: tuple[str, ...]

  @classmethod
  def of(cls, base: RunConfig, **lists) -> 'SweepAxes':
    """Axes from the given lists; an empty or missing list is the base config's one value."""
    single = {'thresholds': (base.threshold,), 'seeds': (base.seed,),
              'learning_rates': (base.learning_rate,),
              'imbalance_ratios': (base.imbalance_ratio,), 'resamplers': (base.resampler,)}
    return cls(**{k: tuple(lists.get(k) or v) for k, v in single.items()})

  @property
  def points_per_group(self) -> int:
    return len(self.thresholds) * len(self.seeds) * len(self.learning_rates)


class Group(NamedTuple):
  """One compiled program's worth of sweep points.

  name: directory-safe name, e.g. 'ir10_smote'. points: S single-run configs,
  ordered threshold-major, then seed, then learning rate.
  """
  name: str
  points: tuple[RunConfig, ...]


def make_groups(base: RunConfig, axes: SweepAxes) -> list[Group]:
  """The sweep's groups in run order (imbalance ratio-major, then resampler)."""
  groups = []
  for ir in axes.imbalance_ratios:
    for resampler in axes.resamplers:
      points = tuple(
          base.replace(imbalance_ratio=ir, resampler=resampler, threshold=t, seed=s,
                       learning_rate=lr, data_seed=base.effective_data_seed)
          for t in axes.thresholds for s in axes.seeds for lr in axes.learning_rates)
      groups.append(Group(group_name(points[0]), points))
  return groups


def group_name(cfg: RunConfig) -> str:
  return f'ir{cfg.imbalance_ratio:g}_{cfg.resampler}'


def point_settings(cfg: RunConfig) -> list[str]:
  """The SETTING_COLUMNS values of a point, as written to sweep.csv."""
  return [f'{cfg.imbalance_ratio:g}', cfg.resampler, f'{cfg.threshold:g}', str(cfg.seed),
          f'{cfg.learning_rate:g}']


def stack(trees):
  """Stacks equal-structure pytrees along a new leading axis S."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def make_sweep_round(spec: round_lib.RoundSpec, clients_axis: int | None = None) -> Callable:
  """The round vmapped over a leading sweep axis S of the state and the hparams; wrap in jit.

  With `spec.mesh`, S is sharded over the mesh's SWEEP axis (and clients over CLIENTS).
  clients_axis: None (every point shares the clients) or 0 (clients with a leading S,
  e.g. the per-point data of `--resample_every=once`).

  Returns:
    sweep_step(state: ServerState with leaves [S, ...], clients, test,
    hparams: HParams of float32/int32[S]) -> (ServerState [S, ...], RoundOutput [S, ...]).
  """
  return jax.vmap(round_lib.make_round(spec), in_axes=(0, clients_axis, None, 0),
                  spmd_axis_name=sharding.SWEEP if spec.mesh is not None else None)


def sweep_mesh(points: int, devices=None) -> jax.sharding.Mesh:
  """A mesh of all devices: as many on the SWEEP axis as divide both the device count
  and the S = `points` sweep points, the rest on the CLIENTS axis."""
  devices = list(jax.devices() if devices is None else devices)
  return sharding.make_mesh(devices, sweep_devices=math.gcd(len(devices), points))


def sweep_header(class_names) -> list[str]:
  return list(SETTING_COLUMNS) + train.csv_header(class_names)


def run_sweep(base: RunConfig, axes: SweepAxes, workdir: str, stream=None,
              on_start: Callable[[], None] | None = None) -> dict:
  """Runs every group of the sweep for `base.rounds` rounds, appending to `workdir/sweep.csv`.

  Resumes each group from its newest intact checkpoint (sweep.csv is rewritten
  from the rows kept in the checkpoints); a finished group is skipped.
  Progress goes to `stream` (default stderr). `on_start()` runs once the first
  group's data has loaded, before anything is written.

  Returns {'groups': [{'name', 'points', 'traces', 'compile_s', 'round_s', 'resumed_at'}]}:
  traces counts how often the group's round was traced (1: one compiled program).
  """
  if jax.process_count() > 1:
    raise NotImplementedError('sweeps run in one process (on all its devices)')
  groups = make_groups(base, axes)
  mesh = sweep_mesh(axes.points_per_group)
  ckpt_root = os.path.join(workdir, 'checkpoints')
  resume = {g.name: checkpoint.resume_point(os.path.join(ckpt_root, g.name),
                                           base.keep_checkpoints) for g in groups}
  done = {name: step for name, (step, _) in resume.items()}
  bar = progress_lib.Progress(len(groups) * base.rounds, len(groups) * axes.points_per_group,
                              stream=stream)
  todo = []
  for group in groups:
    start = min(done[group.name], base.rounds)
    bar.skip(start, len(group.points) if start == base.rounds else 0)
    if start < base.rounds:  # A finished group is neither built nor compiled.
      todo.append((group, start))
  report, f = [], None
  try:
    def open_csv(class_names):  # Rewrite the rows kept in the checkpoints, then append.
      if on_start is not None:
        on_start()
      return workdir_lib.open_rows(os.path.join(workdir, 'sweep.csv'), sweep_header(class_names),
                                   rows=[row for g in groups for row in resume[g.name][1]])

    # The next group is built and compiled in a background thread while this one runs.
    for index, ready in enumerate(ahead(todo, lambda item: _compile_group(*item, base, mesh, bar.stream))):
      if f is None:
        f, writer = open_csv(ready.class_names)
      report.append(_run_group(ready, base, mesh, ckpt_root, writer, f, bar,
                               groups_left=len(todo) - index - 1,
                               rows=resume[ready.group.name][1]))
    if f is None:  # Every group had finished: only sweep.csv is rewritten (no compile).
      f, _ = open_csv(train.build(groups[0].points[0], mesh=mesh).data.class_names)
  finally:
    if f is not None:
      f.close()
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


class ReadyGroup(NamedTuple):
  """A group built and compiled: its stacked state, data, program and trace count."""
  group: Group
  start: int
  class_names: tuple
  state: round_lib.ServerState
  hparams: round_lib.HParams
  clients: object
  test: object
  program: train.Program
  compile_s: float
  traces: list


def _compile_group(group, start, base, mesh, stream=None) -> ReadyGroup:
  """Builds group's points (stacked on S, sharded) and compiles its program."""
  with progress_lib.stage(f'{group.name}: loading data', stream):
    first = train.build(group.points[0], mesh=mesh)
  exps = [first] + [train.build(p, first.data, mesh=mesh) for p in group.points[1:]]
  state, hparams = sharding.shard_leading(
      (stack([e.state for e in exps]), stack([e.hparams for e in exps])), mesh)
  clients = sharding.shard_clients(first.data.clients, mesh)
  test = sharding.replicate(first.data.test, mesh)
  traces = []

  def counted_sweep_round(spec, clients_axis):
    inner = make_sweep_round(spec, clients_axis)

    def sweep_round(*args):
      traces.append(1)  # Counts traces: one per compiled program.
      return inner(*args)
    return sweep_round

  t0 = time.perf_counter()
  with progress_lib.stage(f'{group.name}: compiling', stream):
    program = train.compile_program(first.spec, train.block_length(base), base.resample_every,
                                    state, clients, test, hparams, sweep=counted_sweep_round)
  return ReadyGroup(group, start, first.data.class_names, state, hparams, clients, test, program,
                    time.perf_counter() - t0, traces)


def _run_group(ready: ReadyGroup, base, mesh, ckpt_root, writer, f, bar, groups_left, rows):
  """Runs a ready group's rounds start+1..base.rounds; returns its report dict.

  rows: the group's sweep.csv rows so far (from its checkpoint); extended here.
  """
  group, start, state, hparams, clients, test, program, compile_s, traces = (
      ready.group, ready.start, ready.state, ready.hparams, ready.clients, ready.test,
      ready.program, ready.compile_s, ready.traces)
  if program.prepare is not None:  # Per-point resampled rows [S, C, M, ...].
    clients = program.prepare(clients, hparams)
  bar.compiled(compile_s)
  ckpt = checkpoint.Checkpoints(os.path.join(ckpt_root, group.name), base.keep_checkpoints)
  if start:
    state, _ = ckpt.restore(state, step=start)
  settings = [point_settings(p) for p in group.points]
  header = train.csv_header(ready.class_names)
  tb_root = os.path.join(os.path.dirname(ckpt_root), 'tb')  # ckpt_root is DIR/checkpoints.
  tbs = [tensorboard_writer.ScalarWriter(os.path.join(tb_root, tensorboard_writer.point_dir(
      dict(zip(SETTING_COLUMNS, point)))), start + 1) for point in settings]
  times = []
  calls = train.CallPlan(start, base.rounds, base.checkpoint_every, train.block_length(base))
  for first_round, count in calls:
    state, device_outs, outs, seconds = train.run_block(program.step, state, clients, test,
                                                        hparams, count)
    calls.record(count, seconds)
    block = train.csv_rows(first_round, outs, seconds / count)  # Round-major, then point.
    for i in range(count):
      r = first_round + i
      times.append(seconds / count)
      metric_rows = block[i * len(settings):(i + 1) * len(settings)]
      new = [point + row for point, row in zip(settings, metric_rows)]
      rows.extend(new)
      writer.writerows(new)
      for tb, row in zip(tbs, metric_rows):
        tb.write(r, dict(zip(header, row)))
      bar.round_done(times[-1], f'group {group.name} round {r}/{base.rounds}', groups_left,
                     points_done=len(settings) if r == base.rounds else 0)
    f.flush()
    if calls.checkpoint_due(r) or interrupts.pending():
      ckpt.save(state, jax.tree.map(lambda a: a[count - 1], device_outs.metrics), rows=rows)
    if interrupts.pending():
      interrupts.stop(r)
  ckpt.close()
  for tb in tbs:
    tb.close()
  return {'name': group.name, 'points': len(settings), 'traces': len(traces),
          'devices': dict(mesh.shape),
          'compile_s': compile_s, 'round_s': statistics.median(times), 'resumed_at': start}
