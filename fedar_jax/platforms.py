"""Which JAX platforms a process starts: no TPU start-up where no TPU is attached.

With `libtpu` installed (the `plan` extra) and JAX_PLATFORMS unset, JAX tries
to start a TPU backend in every process, fails on a machine without a TPU and
prints several libtpu error lines. `skip_absent_tpu` sets JAX_PLATFORMS to the
platforms that can start (the CPU, plus a GPU whose JAX plugin and device
files are present) when libtpu is installed and no TPU chip is attached. A TPU
VM keeps JAX's own choice (its TPUs), and a JAX_PLATFORMS already set is never
changed. `cpu_device_count` is the CPU device count --cpu_devices asks for
(`cli.split_cpu` sets it).

A TPU chip is attached when the PCI bus lists a Google device of a TPU device
id (the check `jax._src.hardware_utils` makes before starting libtpu), or a
`/dev/accel*` device exists (TPU v2-v4 VMs). This module imports no JAX: it
runs before JAX reads its configuration.
"""
import glob
import importlib.util
import os
import pathlib
import sys

GOOGLE_PCI_VENDOR = '0x1ae0'
# PCI device ids of TPU chips (v3, v4, v5p, v5e, v6e, TPU7x), as JAX lists them.
TPU_PCI_DEVICES = ('0x0027', '0x0056', '0x005e', '0x0062', '0x0063', '0x006f', '0x0076')
# Environment of a libtpu that only compiles for a topology (no TPU attached): skip
# the metadata-server query and name a host and an accelerator, so libtpu prints no
# errors about them, and let several processes load it (no TPU to share, so no
# /tmp/libtpu_lockfile). Keys: TPU generation as the topology names spell it.
ACCELERATOR_TYPES = {'v4': 'v4-8', 'v5e': 'v5litepod-4', 'v5p': 'v5p-8', 'v6e': 'v6e-4'}
# The XLA flag that sets the CPU backend's device count from XLA_FLAGS (what --cpu_devices
# sets through JAX's jax_num_cpu_devices).
FORCE_DEVICE_COUNT = '--xla_force_host_platform_device_count'
# The most CPU devices --cpu_devices makes: every device's thread must join each of XLA:CPU's
# collectives, and with 512 devices they stall and the process aborts.
MAX_CPU_DEVICES = 256


def _read(path: str) -> str:
  try:
    return pathlib.Path(path).read_text().strip()
  except OSError:
    return ''


def tpu_attached(root: str = '/') -> bool:
  """Whether this machine (its file system at `root`) has a TPU chip: a PCI device of
  Google's vendor id with a TPU device id (not, e.g., a gVNIC), or /dev/accel*."""
  for vendor in glob.glob(os.path.join(root, 'sys/bus/pci/devices/*/vendor')):
    if (_read(vendor) == GOOGLE_PCI_VENDOR
        and _read(os.path.join(os.path.dirname(vendor), 'device')) in TPU_PCI_DEVICES):
      return True
  return bool(glob.glob(os.path.join(root, 'dev/accel*')))


def libtpu_installed() -> bool:
  return importlib.util.find_spec('libtpu') is not None


def startable_platforms() -> str:
  """JAX_PLATFORMS for a machine without a TPU: a GPU whose plugin and devices are
  present, then the CPU."""
  names = []
  cuda = any(importlib.util.find_spec(f'jax_cuda{v}_plugin') for v in (12, 13))
  if cuda and glob.glob('/dev/nvidia[0-9]*'):
    names.append('cuda')
  if importlib.util.find_spec('jax_rocm7_plugin') and os.path.exists('/dev/kfd'):
    names.append('rocm')
  return ','.join(names + ['cpu'])


def skip_absent_tpu(environ=None) -> str | None:
  """Sets JAX_PLATFORMS (`startable_platforms()`) when libtpu is installed, no TPU is
  attached and JAX_PLATFORMS is unset; also JAX's setting if JAX is imported but has
  started no backend. Returns the value set, or None (nothing changed)."""
  environ = os.environ if environ is None else environ
  if 'JAX_PLATFORMS' in environ or not libtpu_installed() or tpu_attached():
    return None
  value = environ['JAX_PLATFORMS'] = startable_platforms()
  jax = sys.modules.get('jax')
  if jax is not None and environ is os.environ and not jax.config.jax_platforms:
    jax.config.update('jax_platforms', value)
  return value


def quiet_topology_compiles(generation: str, environ=None) -> None:
  """Sets the environment of a libtpu that only compiles for TPU `generation`'s
  topologies (ACCELERATOR_TYPES), where no TPU is attached and libtpu has not started;
  values already set are kept."""
  environ = os.environ if environ is None else environ
  if tpu_attached():
    return
  environ.setdefault('TPU_SKIP_MDS_QUERY', '1')
  environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')
  environ.setdefault('TPU_ACCELERATOR_TYPE', ACCELERATOR_TYPES.get(generation, 'v5litepod-4'))


def cpu_cores() -> int:
  """The CPU cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # No affinity call on this OS.
    return os.cpu_count() or 1


def cpu_device_count(requested: int) -> int:
  """The CPU devices --cpu_devices=`requested` makes: `requested`, or 0 -> `cpu_cores()`
  (at most MAX_CPU_DEVICES)."""
  return requested if requested > 0 else min(cpu_cores(), MAX_CPU_DEVICES)


def forced_device_count(environ=None) -> bool:
  """Whether XLA_FLAGS sets the CPU device count (FORCE_DEVICE_COUNT)."""
  environ = os.environ if environ is None else environ
  return FORCE_DEVICE_COUNT in environ.get('XLA_FLAGS', '')
