"""Placing arrays on a device mesh: the client axis (and a sweep axis) sharded.

The mesh has two named axes, SWEEP and CLIENTS, of shape (sweep_devices,
devices / sweep_devices); by default every device is on the CLIENTS axis.
Client data ClientData x[C, N, ...] is sharded on its leading client axis;
everything else (global parameters, test set, traced hyperparameters) is
replicated. A sweep that stacks states/hyperparameters with a leading axis S
shards that axis with `shard_leading(tree, mesh, SWEEP)` and vmaps the round
with `jax.vmap(..., spmd_axis_name=SWEEP)` so sharding constraints inside the
round compose with it.

Works the same across hosts: `global_array` builds a global jax.Array from
the rows a process holds (`jax.make_array_from_process_local_data`), and
`fetch` brings any output back to NumPy on every process.
"""
from typing import Callable

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from fedar_jax.data.federated import ClientData

SWEEP = 'sweep'
CLIENTS = 'clients'


def make_mesh(devices=None, sweep_devices: int = 1) -> Mesh:
  """A (SWEEP, CLIENTS) mesh over `devices` (default: all devices of all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  if len(devices) % sweep_devices:
    raise ValueError(f'{len(devices)} devices cannot be split into {sweep_devices} sweep groups')
  grid = np.array(devices, dtype=object).reshape(sweep_devices, len(devices) // sweep_devices)
  return Mesh(grid, (SWEEP, CLIENTS))


def client_devices(mesh: Mesh | None) -> int:
  """Number of devices along the CLIENTS axis (1 without a mesh)."""
  return 1 if mesh is None else mesh.shape[CLIENTS]


def client_constraint(mesh: Mesh | None) -> Callable:
  """a[P, ...] -> a with its leading (client slot) axis constrained to the mesh's CLIENTS
  axis, the rest replicated; the identity without a mesh. For use inside a jitted function
  (composes with a vmap over a sweep axis with `spmd_axis_name=SWEEP`)."""
  if mesh is None:
    return lambda a: a
  axis = leading(mesh)
  return lambda a: jax.lax.with_sharding_constraint(a, axis)


def leading(mesh: Mesh, axis: str = CLIENTS) -> NamedSharding:
  """Sharding of an array's leading axis over mesh axis `axis`, the rest replicated."""
  return NamedSharding(mesh, P(axis))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_array(local: np.ndarray, sharding: NamedSharding, global_rows: int | None = None):
  """A global jax.Array from this process's rows (all rows on one process).

  local: the rows of the leading axis this process holds, in order (for a
  replicated sharding: the whole array). global_rows: the global leading size.
  """
  local = np.asarray(local)
  shape = local.shape if global_rows is None else (global_rows,) + local.shape[1:]
  if jax.process_count() == 1:
    return jax.device_put(local, sharding)
  return jax.make_array_from_process_local_data(sharding, local, shape)


def shard_clients(local: ClientData, mesh: Mesh, global_clients: int | None = None) -> ClientData:
  """Puts (this process's rows of) ClientData on the mesh, sharded over CLIENTS."""
  sharding = leading(mesh)
  return ClientData(*(global_array(a, sharding, global_clients) for a in local))


def shard_stacked_clients(local: ClientData, mesh: Mesh,
                          global_clients: int | None = None) -> ClientData:
  """Puts stacked ClientData [U, C, ...] (this process's client rows) on the mesh: the
  data-set axis U sharded over SWEEP, the clients over CLIENTS."""
  sharding = NamedSharding(mesh, P(SWEEP, CLIENTS))

  def put(a):
    a = np.asarray(a)
    if jax.process_count() == 1:
      return jax.device_put(a, sharding)
    shape = (a.shape[0], global_clients or a.shape[1]) + a.shape[2:]
    return jax.make_array_from_process_local_data(sharding, a, shape)
  return ClientData(*(put(a) for a in local))


def replicate(tree, mesh: Mesh):
  """Puts every leaf of `tree` on every device of the mesh (same value on every process)."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda a: global_array(np.asarray(a), sharding), tree)


def shard_leading(tree, mesh: Mesh, axis: str = SWEEP):
  """Shards every leaf's leading axis (e.g. a sweep axis S) over mesh axis `axis`."""
  sharding = leading(mesh, axis)
  return jax.tree.map(lambda a: global_array(np.asarray(a), sharding), tree)


def fetch(tree):
  """Every leaf as NumPy on every process (gathers leaves that span other hosts)."""
  def get(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)
  return jax.tree.map(get, tree)

