"""--client_block=0 picks the largest block whose compiled round fits the device's memory."""
import jax

from fedar_jax import client_block_fit
from fedar_jax import planning
from fedar_jax import sharding
from fedar_jax import topology
from fedar_jax.config import RunConfig

CFG = RunConfig(num_clients=4, samples_per_client=200, feature_dim=64, hidden=(4,), rounds=2,
                local_epochs=1, batch_size=8, resampler='random_over',
                resample_every='round', checkpoint_every=2)


def _bytes(cfg, block, mesh, target):
  shape = planning.abstract_build.data_shape([cfg])
  inputs = planning.abstract_build.program_inputs((cfg,), 1, shape, mesh, block, False)
  compiled = planning.compile_programs(inputs, 2, cfg.resample_every, False, 1, mesh,
                                       planning.compiler_options(target, False))
  return planning._bytes(compiled, target)


def _compile_once(monkeypatch):
  """planning.compile_programs compiles each client block once (the test asks again)."""
  compiled, real = {}, planning.compile_programs

  def once(inputs, *args):
    key = inputs.spec.client_block
    if key not in compiled:
      compiled[key] = real(inputs, *args)
    return compiled[key]
  monkeypatch.setattr(planning, 'compile_programs', once)


def test_small_data_runs_all_clients_at_once_without_compiling(monkeypatch):
  monkeypatch.setattr(planning, 'compile_programs', None)  # Would fail if called.
  assert client_block_fit.choose(CFG) == 0
  assert client_block_fit.choose(CFG.replace(client_block=5)) == 5


def test_memory_below_the_whole_round_picks_the_largest_block_that_fits(monkeypatch):
  _compile_once(monkeypatch)
  mesh = sharding.make_mesh(jax.devices()[:1])
  local = topology.local_target()
  whole, one, two = (_bytes(CFG, b, mesh, local) for b in (0, 1, 2))
  assert one < two < whole
  monkeypatch.setattr(topology, 'local_target', lambda: local._replace(hbm_per_chip_bytes=two))
  monkeypatch.setattr(client_block_fit, 'HEADROOM', 10 ** 6)  # Always compile.
  assert client_block_fit.choose(CFG, mesh) == 2
