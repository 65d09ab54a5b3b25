"""Sweeps: settings that only change numbers or data run as one compiled program.

A sweep is the product of the sweep lists (sweep_axes.SWEEP_FLAGS). Lists of
kind 'traced' (threshold, seed, learning rate) and 'data' (imbalance ratio,
data seed, attacker fraction) only change numbers or data, so every
combination of them becomes one slice of a leading axis S of the server state
and of HParams, and the round is `vmap`ped over it (with the clients `vmap`ped
inside): one program per *group*. The U distinct data sets are built once and
stacked (sweep_data); the points are data-major (S = U x R), and inside the
program each data set is repeated for its R points and the round vmapped
over S with the clients' in_axes 0; with U = 1 the clients are not stacked
and every point shares them (in_axes None). Lists of kind
'code' (resampler) change the program: one group each. A seed sets the model
initialisation and all client randomness; the data comes from the point's
data seed. The sweep axis is sharded over the devices of all processes
(`mesh_for`: as many as divide U, or S when U = 1, on the mesh's SWEEP axis,
the rest shard the clients); in a multi-host sweep every process runs the same
command, loads the client rows its devices hold, and process 0 writes the
workdir (every process takes part in the checkpoints). Point (threshold t,
seed s, learning rate l, imbalance ratio r, data seed d, attacker fraction a)
of group (resampler z) therefore equals the single run `fedar_jax.main --threshold=t --seed=s
--learning_rate=l --imbalance_ratio=r --data_seed=d --attacker_fraction=a
--resampler=z` (see sweep_data for when padding breaks the exact equality).

Workdir contents (besides the report's files):
  sweep.csv       one row per sweep point per round: the point's settings
                  (SETTING_COLUMNS), then every column of a single run's metrics.csv
  sweep.json      the settings the workdir was started with (a rerun must match)
  checkpoints/G/  Orbax checkpoints of group G's stacked state (G: the group's code
                  values joined by '_', e.g. 'smote'); reruns resume
"""
import math
import os
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp

from fedar_jax import checkpoint
from fedar_jax import distributed
from fedar_jax import progress as progress_lib
from fedar_jax import round as round_lib
from fedar_jax import sharding
from fedar_jax import sweep_data
from fedar_jax import train
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import RunConfig
from fedar_jax.sweep_axes import (SETTING_COLUMNS, Group, SweepAxes,  # noqa: F401 (re-exported)
                                  group_name, make_groups, point_settings)


def stack(trees):
  """Stacks equal-structure pytrees along a new leading axis S."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def make_sweep_round(spec: round_lib.RoundSpec, num_data: int = 1) -> Callable:
  """The round vmapped over a leading sweep axis S of the state and the hparams; wrap in jit.

  num_data: U. With U = 1 every point shares the clients and the test set
  (ClientData [C, ...], TestData [T, ...]). With U > 1 they are stacked
  ([U, C, ...], [U, T, ...]) and point s uses data set s // (S / U).
  With `spec.mesh`, S (or U) is sharded over the mesh's SWEEP axis (and clients
  over CLIENTS).

  Returns:
    sweep_step(state: ServerState with leaves [S, ...], clients, test,
    hparams: HParams of float32/int32[S]) -> (ServerState [S, ...], RoundOutput [S, ...]).
  """
  vmapped = jax.vmap(round_lib.make_round(spec), in_axes=(0, 0 if num_data > 1 else None,
                                                         0 if num_data > 1 else None, 0),
                     spmd_axis_name=sharding.SWEEP if spec.mesh is not None else None)
  if num_data <= 1:
    return vmapped

  def sweep_step(state, clients, test, hparams):
    # [U, ...] -> [S, ...], data-major. One flat vmap over S compiles in half the time
    # of a vmap over U around a vmap over S / U (measured); the copies live only
    # inside the program.
    points = jax.tree.leaves(hparams)[0].shape[0]
    repeat = lambda a: jnp.broadcast_to(
        a[:, None], (num_data, points // num_data) + a.shape[1:]).reshape(
            (points,) + a.shape[1:])
    if points != num_data:
      clients, test = jax.tree.map(repeat, (clients, test))
    return vmapped(state, clients, test, hparams)
  return sweep_step


def sweep_mesh(points: int, devices=None) -> jax.sharding.Mesh:
  """A mesh of all devices: as many on the SWEEP axis as divide both the device count
  and `points` (the sweep points S, or the data sets U when stacked), the rest on
  the CLIENTS axis."""
  devices = list(jax.devices() if devices is None else devices)
  return sharding.make_mesh(devices, sweep_devices=math.gcd(len(devices), points))


def mesh_for(axes: SweepAxes, devices=None) -> jax.sharding.Mesh:
  """The sweep's mesh: the SWEEP axis divides U when the data is stacked, else S."""
  u = axes.data_sets
  return sweep_mesh(u if u > 1 else axes.points_per_group, devices)


def sweep_header(class_names) -> list[str]:
  return list(SETTING_COLUMNS) + train.csv_header(class_names)


def run_sweep(base: RunConfig, axes: SweepAxes, workdir: str, stream=None,
              data: sweep_data.SweepData | None = None, mesh=None) -> dict:
  """Runs every group of the sweep for `base.rounds` rounds, appending to `workdir/sweep.csv`.

  Resumes each group from its newest checkpoint; a finished group is skipped.
  Progress goes to `stream` (default stderr). `data` and `mesh` are
  `sweep_data.prepare`'s result and its mesh (`mesh_for(axes)`), made here if
  not given.

  Returns {'groups': [{'name', 'points', 'traces', 'compile_s', 'round_s', 'resumed_at'}]}:
  traces counts how often the group's round was traced (1: one compiled program).
  """
  groups = make_groups(base, axes)
  writer_process = distributed.is_writer()
  mesh = mesh or mesh_for(axes)
  data = data or sweep_data.prepare(base, axes, mesh)
  ckpt_root = os.path.join(workdir, 'checkpoints')
  done = {g.name: checkpoint.latest_step(os.path.join(ckpt_root, g.name)) for g in groups}
  bar = progress_lib.Progress(len(groups) * base.rounds, len(groups) * axes.points_per_group,
                              stream=stream if writer_process else open(os.devnull, 'w'))
  report = []
  # Drop rows past each group's checkpoint, then append (process 0 only).
  f, writer = workdir_lib.open_rows(
      os.path.join(workdir, 'sweep.csv') if writer_process else None,
      sweep_header(data.sets[0].class_names),
      keep=lambda row: int(row['round']) <= done.get(group_name(row), 0))
  with f:
    for index, group in enumerate(groups):
      start = min(done[group.name], base.rounds)
      bar.skip(start, len(group.points) if start == base.rounds else 0)
      if start == base.rounds:
        continue
      report.append(_run_group(group, data, start, base, mesh, ckpt_root, writer, f, bar,
                               groups_left=len(groups) - index - 1))
  return {'groups': report}


def build_points(group: Group, data: sweep_data.SweepData, mesh) -> list[train.Experiment]:
  """Every point's Experiment, on its data set, with the sweep's resampler bound."""
  per_set = len(group.points) // group.num_data
  return [train.build(p, data.sets[s // per_set], mesh=mesh,
                      max_class_count=data.max_class_count)
          for s, p in enumerate(group.points)]


def _run_group(group, data, start, base, mesh, ckpt_root, writer, f, bar, groups_left):
  """Runs one group's rounds start+1..base.rounds; returns its report dict."""
  exps = build_points(group, data, mesh)
  first = exps[0]
  state, hparams = sharding.shard_leading(
      (stack([e.state for e in exps]), stack([e.hparams for e in exps])), mesh)
  clients, test = data.clients, data.test
  traces, inner = [], make_sweep_round(first.spec, group.num_data)

  def sweep_round(*args):
    traces.append(1)  # Counts traces: one per compiled program.
    return inner(*args)

  t0 = time.perf_counter()
  step = jax.jit(sweep_round).lower(state, clients, test, hparams).compile()
  compile_s = time.perf_counter() - t0
  bar.compiled(compile_s)
  ckpt = checkpoint.Checkpoints(os.path.join(ckpt_root, group.name), base.keep_checkpoints)
  if start:
    like = jax.eval_shape(inner, state, clients, test, hparams)[1].metrics
    state, _ = ckpt.restore(state, like)
  settings = [point_settings(p) for p in group.points]
  times = []
  for r in range(start + 1, base.rounds + 1):
    t = time.perf_counter()
    state, out = step(state, clients, test, hparams)
    out = sharding.fetch(out)
    times.append(time.perf_counter() - t)
    for s, point in enumerate(settings):
      writer.writerow(point + train.csv_row(r, jax.tree.map(lambda a: a[s], out), times[-1]))
    f.flush()
    if r % base.checkpoint_every == 0 or r == base.rounds:
      ckpt.save(state, out.metrics)
    bar.round_done(times[-1], f'group {group.name} round {r}/{base.rounds}', groups_left,
                   points_done=len(settings) if r == base.rounds else 0)
  ckpt.close()
  return {'name': group.name, 'points': len(settings), 'traces': len(traces),
          'devices': dict(mesh.shape),
          'compile_s': compile_s, 'round_s': statistics.median(times), 'resumed_at': start}
