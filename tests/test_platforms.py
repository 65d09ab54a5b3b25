"""JAX_PLATFORMS chosen before JAX loads: no TPU start-up where no TPU is attached."""
import pytest

from fedar_jax import platforms


@pytest.fixture
def machine(monkeypatch):
  """Sets what the machine has: machine(libtpu=..., tpu=...)."""
  def set_(libtpu: bool, tpu: bool):
    monkeypatch.setattr(platforms, 'libtpu_installed', lambda: libtpu)
    monkeypatch.setattr(platforms, 'tpu_attached', lambda: tpu)
    monkeypatch.setattr(platforms, 'startable_platforms', lambda: 'cpu')
  return set_


def test_libtpu_without_a_tpu_starts_only_what_can_start(machine):
  machine(libtpu=True, tpu=False)
  env = {}
  assert platforms.skip_absent_tpu(env) == 'cpu' and env == {'JAX_PLATFORMS': 'cpu'}


@pytest.mark.parametrize('libtpu,tpu,env', [
    (True, True, {}),  # a TPU VM keeps JAX's choice: its TPUs
    (False, False, {}),  # no libtpu: nothing to skip
    (True, False, {'JAX_PLATFORMS': 'tpu,cpu'}),  # the user's choice stands
])
def test_nothing_changes_otherwise(machine, libtpu, tpu, env):
  machine(libtpu=libtpu, tpu=tpu)
  before = dict(env)
  assert platforms.skip_absent_tpu(env) is None and env == before


def test_quiet_topology_compiles_keeps_set_values(monkeypatch):
  monkeypatch.setattr(platforms, 'tpu_attached', lambda: False)
  env = {'TPU_WORKER_HOSTNAMES': 'h0'}
  platforms.quiet_topology_compiles('v6e', env)
  assert env['TPU_WORKER_HOSTNAMES'] == 'h0' and env['TPU_ACCELERATOR_TYPE'] == 'v6e-4'
  assert env['TPU_SKIP_MDS_QUERY'] == '1' and env['ALLOW_MULTIPLE_LIBTPU_LOAD'] == '1'


@pytest.mark.parametrize('devices,accel,attached', [
    ({'0000:00:04.0': ('0x1ae0', '0x0042')}, False, False),  # a Google gVNIC network card
    ({'0000:00:04.0': ('0x1ae0', '0x0042'), '0000:00:05.0': ('0x1ae0', '0x0063')}, False,
     True),  # and a TPU v5e chip
    ({'0000:00:05.0': ('0x10de', '0x2330')}, False, False),  # an NVIDIA GPU
    ({}, True, True),  # /dev/accel0 (TPU v4 VMs)
])
def test_tpu_attached_reads_the_pci_ids(tmp_path, devices, accel, attached):
  for name, (vendor, device) in devices.items():
    path = tmp_path / 'sys/bus/pci/devices' / name
    path.mkdir(parents=True)
    (path / 'vendor').write_text(vendor + '\n')
    (path / 'device').write_text(device + '\n')
  if accel:
    (tmp_path / 'dev').mkdir()
    (tmp_path / 'dev/accel0').write_text('')
  assert platforms.tpu_attached(str(tmp_path)) == attached


def test_cpu_devices_zero_is_one_per_core_and_the_rest_as_given():
  assert platforms.cpu_device_count(0) == platforms.cpu_cores() >= 1
  assert platforms.cpu_device_count(3) == 3


def test_cpu_devices_beside_xla_flags_device_count_is_refused(monkeypatch):
  from fedar_jax import config
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
  config.validate(config.RunConfig())  # 1: XLA_FLAGS' count stands.
  with pytest.raises(config.ConfigError, match='--cpu_devices: 2 and XLA_FLAGS'):
    config.validate(config.RunConfig(cpu_devices=2))


def test_split_cpu_after_jax_started_names_the_flag():
  import jax
  from fedar_jax import cli
  from fedar_jax import config
  started = len(jax.devices('cpu'))  # Starts the CPU backend in this process.
  assert cli.split_cpu(1) is None
  with pytest.raises(config.ConfigError, match='--cpu_devices: .* JAX already started'):
    cli.split_cpu(started + 1)
