"""Plan targets: a TPU topology (through libtpu, no TPU needed) or this machine's devices.

A target is the device list a run would build its mesh from, with the memory
of one chip. TPU topologies are named as JAX spells them
(`jax.experimental.topologies.get_topology_desc`): GENERATION:DIMS, e.g.
`v4:2x2x4`, `v5e:4x4`, `v5p:2x2x2`, `v6e:16x16`; DIMS are chips per axis.
Their devices span every process of the slice (a multi-host slice has several).
"""
import math
import os
import re
from typing import NamedTuple

from fedar_jax import platforms
from fedar_jax.config import ConfigError

GIB = 2 ** 30
# HBM per chip by generation. Source: Cloud TPU documentation, "TPU versions"
# (cloud.google.com/tpu/docs/v4, /v5e, /v5p, /v6e): v4 32 GiB, v5e 16 GiB,
# v5p 95 GiB, v6e 32 GiB. libtpu's topology devices report no memory_stats().
HBM_PER_CHIP = {'v4': 32 * GIB, 'v5e': 16 * GIB, 'v5p': 95 * GIB, 'v6e': 32 * GIB}
# Peak bf16 flop/s and HBM bytes/s per chip (same source), for the roofline estimate of
# a program XLA gives no `optimal_seconds` for.
PEAK_PER_CHIP = {'v4': (275e12, 1200e9), 'v5e': (197e12, 819e9), 'v5p': (459e12, 2765e9),
                 'v6e': (918e12, 1640e9)}
# Topologies the refusals suggest (slices of each generation, growing).
SLICES = {
    'v4': ('v4:2x2x1', 'v4:2x2x2', 'v4:2x2x4', 'v4:2x4x4', 'v4:4x4x4', 'v4:4x4x8',
           'v4:4x8x8', 'v4:8x8x8'),
    'v5e': ('v5e:2x2', 'v5e:2x4', 'v5e:4x4', 'v5e:4x8', 'v5e:8x8', 'v5e:8x16', 'v5e:16x16'),
    'v5p': ('v5p:2x2x1', 'v5p:2x2x2', 'v5p:2x2x4', 'v5p:2x4x4', 'v5p:4x4x4', 'v5p:4x4x8',
            'v5p:4x8x8', 'v5p:8x8x8'),
    'v6e': ('v6e:2x2', 'v6e:2x4', 'v6e:4x4', 'v6e:4x8', 'v6e:8x8', 'v6e:8x16', 'v6e:16x16'),
}
_NAME = re.compile(r'^(v4|v5e|v5p|v6e):(\d+(?:x\d+){1,2})$')


class Target(NamedTuple):
  """Where a plan compiles for.

  name: the --target value. devices: the mesh's devices (all processes).
  chips: physical chips (a v4 topology has two devices, TensorCores, per chip).
  processes: hosts of the slice. hbm_per_chip_bytes: memory of one chip (host
  memory available for a CPU). platform: 'tpu', 'cpu', 'gpu'.
  generation: 'v4', 'v5e', 'v5p', 'v6e' for a TPU topology, else ''.
  """
  name: str
  devices: tuple
  chips: int
  processes: int
  hbm_per_chip_bytes: int
  platform: str
  generation: str = ''

  @property
  def devices_per_chip(self) -> int:
    return len(self.devices) // self.chips


# Generations whose two TensorCores a chip JAX runs as one device (megacore), as on their
# TPU VMs: libtpu's default chip configuration describes a v4 chip as two devices.
MEGACORE = ('v4', 'v5p')


def generation_of(name: str) -> str:
  """'v5e' of 'v5e:4x4'; raises ConfigError naming --target for an unknown name."""
  match = _NAME.match(name)
  if not match:
    raise ConfigError('target', f'unknown topology {name!r}; use local or GENERATION:DIMS '
                      f'with GENERATION one of {", ".join(HBM_PER_CHIP)} (e.g. v5e:4x4, '
                      'v4:2x2x4, v5p:2x2x2, v6e:16x16)')
  return match.group(1)


def chips_of(name: str) -> int:
  return math.prod(int(d) for d in name.split(':')[1].split('x'))


def resolve(name: str) -> Target:
  """The target called `name`: 'local' (this machine's devices) or a TPU topology.

  Raises ConfigError naming --target for a name JAX cannot resolve, or a TPU
  topology without libtpu installed.
  """
  if name == 'local':
    return local_target()
  generation = generation_of(name)
  if not platforms.libtpu_installed():
    raise ConfigError('target', f'{name} needs libtpu: pip install -e ".[plan]"')
  platforms.quiet_topology_compiles(generation)
  from jax.experimental import topologies  # Imports JAX: after its platforms are chosen.
  try:
    devices = tuple(topologies.get_topology_desc(
        platform='tpu', topology_name=name,
        **({'chip_config_name': 'megacore'} if generation in MEGACORE else {})).devices)
  except Exception as e:  # libtpu's errors are RuntimeError/ValueError/XlaRuntimeError.
    raise ConfigError('target', f'libtpu cannot resolve topology {name!r}: '
                      f'{str(e).splitlines()[0][:200]}') from None
  chips = chips_of(name)
  if len(devices) % chips:
    raise ConfigError('target', f'{name}: {len(devices)} devices on {chips} chips')
  return Target(name, devices, chips, len({d.process_index for d in devices}),
                HBM_PER_CHIP[generation], 'tpu', generation)


def local_target() -> Target:
  """This machine's devices (all processes); memory: a device's `bytes_limit`, or host
  memory available now on a CPU."""
  import jax
  devices = tuple(jax.devices())
  platform = devices[0].platform
  stats = (devices[0].memory_stats() or {}) if platform != 'cpu' else {}
  if 'bytes_limit' in stats:
    memory = int(stats['bytes_limit'])
  else:
    memory = os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // len(
        jax.local_devices())
  return Target('local', devices, len(devices), jax.process_count(), memory,
                'gpu' if platform in ('gpu', 'cuda', 'rocm') else platform)


# Chips of a slice by the topology names of SLICES; v4 and v5p accelerator types count
# TensorCores (two per chip), v5e (v5litepod) and v6e count chips.
_ACCELERATOR_PREFIXES = {'v4': ('v4', 2), 'v5litepod': ('v5e', 1), 'v5p': ('v5p', 2),
                         'v6e': ('v6e', 1)}


def of_accelerator_type(accelerator_type: str) -> str:
  """The topology of a Cloud TPU accelerator type: 'v4-32' -> 'v4:2x2x4',
  'v5litepod-16' -> 'v5e:4x4', 'v6e-256' -> 'v6e:16x16'. Raises ConfigError naming
  --target for one not in SLICES."""
  prefix, _, count = accelerator_type.partition('-')
  generation, per_chip = _ACCELERATOR_PREFIXES.get(prefix, ('', 1))
  chips = int(count) // per_chip if count.isdigit() else 0
  for name in SLICES.get(generation, ()):
    if chips_of(name) == chips:
      return name
  raise ConfigError('target', f'no topology known for accelerator type {accelerator_type!r}; '
                    'give --target=GENERATION:DIMS')


def larger_slices(target: Target, chips_needed: int) -> tuple[str, ...]:
  """Named slices of the target's generation with at least `chips_needed` chips."""
  return tuple(s for s in SLICES.get(target.generation, ()) if chips_of(s) >= chips_needed)
