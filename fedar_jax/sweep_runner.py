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
import dataclasses
import math
import os
import statistics
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedar_jax import checkpoint
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


def make_sweep_round(spec: round_lib.RoundSpec) -> Callable:
  """The round vmapped over a leading sweep axis S of the state and the hparams; wrap in jit.

  With `spec.mesh`, S is sharded over the mesh's SWEEP axis (and clients over CLIENTS).

  Returns:
    sweep_step(state: ServerState with leaves [S, ...], clients, test,
    hparams: HParams of float32/int32[S]) -> (ServerState [S, ...], RoundOutput [S, ...]).
  """
  return jax.vmap(round_lib.make_round(spec), in_axes=(0, None, None, 0),
                  spmd_axis_name=sharding.SWEEP if spec.mesh is not None else None)


def sweep_mesh(points: int, devices=None) -> jax.sharding.Mesh:
  """A mesh of all devices: as many on the SWEEP axis as divide both the device count
  and the S = `points` sweep points, the rest on the CLIENTS axis."""
  devices = list(jax.devices() if devices is None else devices)
  return sharding.make_mesh(devices, sweep_devices=math.gcd(len(devices), points))


def sweep_header(class_names) -> list[str]:
  return list(SETTING_COLUMNS) + train.csv_header(class_names)


def run_sweep(base: RunConfig, axes: SweepAxes, workdir: str, stream=None) -> dict:
  """Runs every group of the sweep for `base.rounds` rounds, appending to `workdir/sweep.csv`.

  Resumes each group from its newest checkpoint; a finished group is skipped.
  Progress goes to `stream` (default stderr).

  Returns {'groups': [{'name', 'points', 'traces', 'compile_s', 'round_s', 'resumed_at'}]}:
  traces counts how often the group's round was traced (1: one compiled program).
  """
  if jax.process_count() > 1:
    raise NotImplementedError('sweeps run in one process (on all its devices)')
  groups = make_groups(base, axes)
  mesh = sweep_mesh(axes.points_per_group)
  ckpt_root = os.path.join(workdir, 'checkpoints')
  done = {g.name: checkpoint.latest_step(os.path.join(ckpt_root, g.name)) for g in groups}
  bar = progress_lib.Progress(len(groups) * base.rounds, len(groups) * axes.points_per_group,
                              stream=stream)
  report, f = [], None
  try:
    for index, group in enumerate(groups):
      with progress_lib.stage(f'{group.name}: loading data', bar.stream):
        first = train.build(group.points[0], mesh=mesh)
      if f is None:  # Drop rows past each group's checkpoint, then append.
        f, writer = workdir_lib.open_rows(
            os.path.join(workdir, 'sweep.csv'), sweep_header(first.data.class_names),
            keep=lambda row: int(row['round']) <= done.get(
                f'ir{row["imbalance_ratio"]}_{row["resampler"]}', 0))
      start = min(done[group.name], base.rounds)
      bar.skip(start, len(group.points) if start == base.rounds else 0)
      if start == base.rounds:
        continue
      report.append(_run_group(group, first, start, base, mesh, ckpt_root, writer, f, bar,
                               groups_left=len(groups) - index - 1))
  finally:
    if f is not None:
      f.close()
  return {'groups': report}


def _run_group(group, first, start, base, mesh, ckpt_root, writer, f, bar, groups_left):
  """Runs one group's rounds start+1..base.rounds; returns its report dict."""
  exps = [first] + [train.build(p, first.data, mesh=mesh) for p in group.points[1:]]
  state, hparams = sharding.shard_leading(
      (stack([e.state for e in exps]), stack([e.hparams for e in exps])), mesh)
  clients = sharding.shard_clients(first.data.clients, mesh)
  test = sharding.replicate(first.data.test, mesh)
  traces, inner = [], make_sweep_round(first.spec)

  def sweep_round(*args):
    traces.append(1)  # Counts traces: one per compiled program.
    return inner(*args)

  t0 = time.perf_counter()
  with progress_lib.stage(f'{group.name}: compiling', bar.stream):
    step = jax.jit(sweep_round).lower(state, clients, test, hparams).compile()
  compile_s = time.perf_counter() - t0
  bar.compiled(compile_s)
  ckpt = checkpoint.Checkpoints(os.path.join(ckpt_root, group.name), base.keep_checkpoints)
  if start:
    like = jax.eval_shape(inner, state, clients, test, hparams)[1].metrics
    state, _ = ckpt.restore(state, like)
  settings = [point_settings(p) for p in group.points]
  header = train.csv_header(first.data.class_names)
  tb_root = os.path.join(os.path.dirname(ckpt_root), 'tb')  # ckpt_root is DIR/checkpoints.
  tbs = [tensorboard_writer.ScalarWriter(os.path.join(tb_root, tensorboard_writer.point_dir(
      dict(zip(SETTING_COLUMNS, point)))), start + 1) for point in settings]
  times = []
  for r in range(start + 1, base.rounds + 1):
    t = time.perf_counter()
    state, out = step(state, clients, test, hparams)
    out = sharding.fetch(out)
    times.append(time.perf_counter() - t)
    for s, point in enumerate(settings):
      row = train.csv_row(r, jax.tree.map(lambda a: a[s], out), times[-1])
      writer.writerow(point + row)
      tbs[s].write(r, dict(zip(header, row)))
    f.flush()
    if r % base.checkpoint_every == 0 or r == base.rounds:
      ckpt.save(state, out.metrics)
    bar.round_done(times[-1], f'group {group.name} round {r}/{base.rounds}', groups_left,
                   points_done=len(settings) if r == base.rounds else 0)
  ckpt.close()
  for tb in tbs:
    tb.close()
  return {'name': group.name, 'points': len(settings), 'traces': len(traces),
          'devices': dict(mesh.shape),
          'compile_s': compile_s, 'round_s': statistics.median(times), 'resumed_at': start}
