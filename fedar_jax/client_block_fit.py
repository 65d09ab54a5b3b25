"""--client_block=0 on a real run: the largest client block whose compiled round fits a device.

`choose(cfg, mesh)`: --client_block when given (> 0); a CNN on a CPU runs one
client at a time and the MLP on a CPU blocks of `train.CPU_MLP_CLIENT_BLOCK` when a round
has more clients (`train.auto_client_block`: the least CPU time per round).
Otherwise, with data whose shapes the flags give (synthetic), the round's
programs are compiled from shapes (`abstract_build`) for this machine's
devices, and the largest block whose programs fit a device's memory (its
`bytes_limit`, or the host memory available on a CPU) is taken, by bisection
over the block sizes (`planning.fitting_block`). A run whose client data is
under 1/HEADROOM of that memory runs all clients at once without a test
compile: the compiled round of the paper workload takes about 5.3 x its client
data per chip (args + temporaries; docs/scale.md). Data read from files runs
all clients at once (its shapes are known only after loading).
"""
import functools

import jax

from fedar_jax import programs
from fedar_jax import sharding
from fedar_jax import sweep_axes
from fedar_jax import train
from fedar_jax.config import RunConfig

# The compiled round needs at most about HEADROOM x its client data (module doc).
HEADROOM = 8


def choose(cfg: RunConfig, mesh=None) -> int:
  """The client block of `cfg`'s round on `mesh` (None: one device); 0 is one block."""
  platform = jax.devices()[0].platform
  block = train.auto_client_block(cfg, platform)
  if cfg.client_block > 0 or block or cfg.dataset != 'synthetic':
    return block
  # Traced settings (a sweep's threshold, seed, ...) change no shape: one search for all.
  defaults = RunConfig()
  return _fitting(cfg.replace(**{e.field: getattr(defaults, e.field)
                                 for e in sweep_axes.SWEEP_FLAGS.values()
                                 if e.kind == sweep_axes.TRACED}), mesh)


@functools.lru_cache(maxsize=64)
def _fitting(cfg: RunConfig, mesh) -> int:
  from fedar_jax import abstract_build
  from fedar_jax import planning
  from fedar_jax import topology
  local = topology.local_target()
  mesh = mesh if mesh is not None else sharding.make_mesh(jax.devices()[:1])
  target = local._replace(devices=tuple(mesh.devices.flat), chips=mesh.size)
  shape = abstract_build.data_shape([cfg])
  data = planning.client_data_bytes_per_chip(cfg, {}, mesh, shape, target)
  if data * HEADROOM <= target.hbm_per_chip_bytes:
    return 0
  options = planning.compiler_options(target, cfg.fast_compile)
  compile_with = lambda block: planning.compile_programs(
      abstract_build.program_inputs((cfg,), 1, shape, mesh, block, False),
      programs.block_length(cfg), cfg.resample_every, False, 1, mesh, options)
  found = planning.fitting_block(compile_with, cfg, mesh, target)
  if found is None:  # Not even the smallest block fits: run the smallest.
    return sharding.client_devices(mesh)
  return found[0]
