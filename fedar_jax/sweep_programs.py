"""The sweep's programs: the round and the pre-training step vmapped over the sweep axis S.

A sweep point is a slice of a leading axis S of the server state and of
HParams; with U > 1 stacked data sets, point s uses data set s // (S / U)
(data-major). `mesh_for` shards S (or U) over the mesh's SWEEP axis and the
clients over CLIENTS. sweep_runner.py runs these programs; fedar-plan compiles
them for other machines.
"""
import math
from typing import Callable

import jax
import jax.numpy as jnp

from fedar_jax import fedar_round
from fedar_jax import sharding
from fedar_jax.sweep_axes import SweepAxes


def stack(trees):
  """Stacks equal-structure pytrees along a new leading axis S."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _repeat(tree, num_data: int, points: int):
  """[U, ...] -> [S, ...] data-major: data set u for points u * S/U .. (u + 1) * S/U - 1."""
  return jax.tree.map(lambda a: jnp.broadcast_to(
      a[:, None], (num_data, points // num_data) + a.shape[1:]).reshape((points,) + a.shape[1:]),
                      tree)


def make_sweep_round(spec: fedar_round.RoundSpec, num_data: int = 1,
                     prepared: bool = False) -> Callable:
  """The round vmapped over a leading sweep axis S of the state and the hparams; wrap in jit.

  num_data: U. With U = 1 every point shares the clients and the test set
  (ClientData [C, ...], TestData [T, ...]). With U > 1 they are stacked
  ([U, C, ...], [U, T, ...]) and point s uses data set s // (S / U).
  prepared: the clients are per point ([S, C, ...], `make_sweep_prepare_clients`'s
  output for `--resample_every=once`).
  With `spec.mesh`, S (or U) is sharded over the mesh's SWEEP axis (and clients
  over CLIENTS).

  Returns:
    sweep_step(state: ServerState with leaves [S, ...], clients, test,
    hparams: HParams of float32/int32[S]) -> (ServerState [S, ...], RoundOutput [S, ...]).
  """
  data_axis = 0 if num_data > 1 else None
  vmapped = jax.vmap(fedar_round.make_round(spec),
                     in_axes=(0, 0 if prepared else data_axis, data_axis, 0),
                     spmd_axis_name=sharding.SWEEP if spec.mesh is not None else None)
  if num_data <= 1:
    return vmapped

  def sweep_step(state, clients, test, hparams):
    # [U, ...] -> [S, ...]. One flat vmap over S compiles in half the time of a vmap
    # over U around a vmap over S / U (measured); the copies live only inside the program.
    points = jax.tree.leaves(hparams)[0].shape[0]
    if points != num_data:
      test = _repeat(test, num_data, points)
      if not prepared:
        clients = _repeat(clients, num_data, points)
    return vmapped(state, clients, test, hparams)
  return sweep_step


def make_sweep_prepare_clients(prepare_clients: Callable, num_data: int, mesh) -> Callable:
  """`pretraining.make_prepare_clients`'s function over the sweep axis: (clients [C, ...]
  or [U, C, ...], hparams [S]) -> per-point prepared clients [S, C, ...]."""
  vmapped = jax.vmap(prepare_clients, in_axes=(0 if num_data > 1 else None, 0),
                     spmd_axis_name=sharding.SWEEP if mesh is not None else None)

  def sweep_prepare_clients(clients, hparams):
    points = jax.tree.leaves(hparams)[0].shape[0]
    if num_data > 1 and points != num_data:
      clients = _repeat(clients, num_data, points)
    return vmapped(clients, hparams)
  return sweep_prepare_clients


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
