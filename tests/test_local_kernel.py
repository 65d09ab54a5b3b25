"""--local_kernel=pallas: the fused kernel equals the XLA local update and round (float32
reordering: within TOL), lowers with Triton for a GPU, and refuses what it cannot train.

The comparisons run at --matmul_precision=highest, so that on a GPU (Triton, where the
default is TF32 passes) they compare full float32 too; on a CPU that is the default."""
import types

from absl import flags
import jax
import numpy as np
import pytest

from fedar_jax import cli
from fedar_jax import client
from fedar_jax import config
from fedar_jax import fedar_round
from fedar_jax import local_kernel
from fedar_jax import models
from fedar_jax import resample
from fedar_jax import sharding
from fedar_jax.data import federated
from tests import helpers

# The two paths sum the same float32 products in different orders (padded widths, fused
# loops); over a few Adam steps their parameters and losses differ by < 1e-6 here.
TOL = dict(rtol=1e-5, atol=1e-5)


def _compiled(fn, *args):
  """jit(fn) compiled for `args`; on a CPU at LLVM level 0 with XLA's classic emitters
  (both paths alike: several times faster to compile, the same comparison)."""
  options = {}
  if jax.default_backend() == 'cpu':
    options = {'xla_cpu_use_fusion_emitters': False, 'xla_backend_optimization_level': 0}
  return jax.jit(fn).lower(*args).compile(options)


def _mlp(widths, seed=0):
  """models.MLP of layer widths (D, hidden..., K) and random parameters of its tree
  (NumPy: no initializer to compile)."""
  rng = np.random.default_rng(seed)
  dense = {f'Dense_{i}': {'kernel': rng.normal(0, n ** -0.5, (n, m)).astype(np.float32),
                          'bias': rng.normal(0, 0.1, m).astype(np.float32)}
           for i, (n, m) in enumerate(zip(widths[:-1], widths[1:]))}
  return models.MLP(num_classes=widths[-1], hidden=tuple(widths[1:-1])), {'params': dense}


def _tree_close(a, b, **tol):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), **tol)


@pytest.fixture(scope='module')
def local_updates():
  """(initial params, XLA updates, kernel updates) of three clients (the last with no real
  row): two hidden layers, odd widths, a partial last batch, two epochs; one compile."""
  num_classes, d, rows = 3, 13, 21
  model, params = _mlp((d, 4, 3, num_classes))
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, rows, d)).astype(np.float32)
  y = rng.integers(0, num_classes, (3, rows)).astype(np.int32)
  mask = rng.random((3, rows)) < 0.7
  mask[2] = False
  keys = jax.random.split(jax.random.key(1), 3)
  train = dict(learning_rate=0.01, epochs=2, batch_size=6)

  def both(k, a, b, c):
    return (client.local_train(model.apply, params, k, a, b, c, **train),
            local_kernel.local_train(params, k, a, b, c, **train))

  with jax.default_matmul_precision('highest'):
    args = (keys, x, y, mask)
    return (params, *_compiled(jax.vmap(both), *args)(*args))


def test_kernel_equals_the_xla_local_update(local_updates):
  params, want, got = local_updates
  _tree_close(got, want, **TOL)
  moved = [np.max(np.abs(np.asarray(p) - np.asarray(q)[0]))
           for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(got[0]))]
  assert min(moved) > 1e-3  # The first client trained every layer.


def test_a_client_without_real_rows_keeps_its_params(local_updates):
  params, _, (trained, loss) = local_updates
  _tree_close([np.asarray(a)[2] for a in jax.tree.leaves(trained)], params, rtol=0, atol=0)
  assert float(loss[2]) == 0.0


def test_round_with_the_kernel_equals_the_xla_round():
  """A whole round (resampling, local training, FedAvg, evaluation) on unequal clients."""
  clients, test = helpers.unequal_clients(sizes=(20, 13), d=6)
  model, params = _mlp((6, 6, 3))
  resampler = resample.make_resampler('random_over', num_classes=3,
                                      capacity=clients.x.shape[1],
                                      max_class_count=federated.max_class_count(clients, 3))
  spec = fedar_round.RoundSpec(model.apply, resampler, 3, 1, 8, matmul_precision='highest')
  state = fedar_round.ServerState(params, np.int32(0))
  hparams = fedar_round.HParams.create(1.5, 0.01, 0)
  args = (state, clients, test, hparams)
  xla_state, xla_out = _compiled(fedar_round.make_round(spec), *args)(*args)
  pallas_spec = spec._replace(local_kernel='pallas')
  assert fedar_round.client_pipeline(pallas_spec).train.__module__ == local_kernel.__name__
  got_state, got_out = _compiled(fedar_round.make_round(pallas_spec), *args)(*args)
  _tree_close(got_state.params, xla_state.params, **TOL)
  _tree_close(got_out.clients, xla_out.clients, **TOL)
  for name in ('gmean', 'accuracy'):
    assert float(got_out.metrics[name]) == pytest.approx(float(xla_out.metrics[name]), abs=1e-6)


def test_kernel_lowers_with_triton_for_a_gpu():
  """Lowered for CUDA on this machine: one Triton call, its grid one program per client."""
  _, params = _mlp((40, 10, 2))

  def train(k, a, b, c):
    return local_kernel.local_train(params, k, a, b, c, learning_rate=1e-3, epochs=5,
                                    batch_size=32, interpret=False)

  args = (jax.random.split(jax.random.key(0), 5), np.zeros((5, 70, 40), np.float32),
          np.zeros((5, 70), np.int32), np.ones((5, 70), bool))
  text = jax.jit(jax.vmap(train)).trace(*args).lower(lowering_platforms=('cuda',)).as_text()
  assert text.count('xla.gpu.triton') == 1 and 'grid_x = 5' in text


def test_a_gpu_mesh_of_several_devices_is_refused(monkeypatch):
  """The Triton call is not partitioned: a client mesh of several GPUs is refused."""
  model, _ = _mlp((4, 3, 2))
  spec = fedar_round.RoundSpec(model.apply, None, 2, 1, 8, local_kernel='pallas',
                               mesh=types.SimpleNamespace(shape={sharding.CLIENTS: 2}))
  fedar_round.client_pipeline(spec)  # Interpret mode on the CPU runs on any mesh.
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  with pytest.raises(config.ConfigError, match='^--local_kernel: pallas runs on one device'):
    fedar_round.client_pipeline(spec)


def _config(*args: str) -> config.RunConfig:
  values = flags.FlagValues()
  cli.define_config_flags(values)
  values(['prog', *args])
  return cli.config_from_flags(values)


@pytest.mark.parametrize('flag,line', [
    ('--loss=focal', '--local_kernel: pallas trains --loss=ce only, not --loss=focal'),
    ('--client_optimizer=sgd',
     '--local_kernel: pallas trains --client_optimizer=adam only, not --client_optimizer=sgd'),
    ('--prox_mu=0.1', '--local_kernel: pallas trains --prox_mu=0 only, not --prox_mu=0.1'),
])
def test_unsupported_settings_are_refused_in_one_line(flag, line):
  with pytest.raises(config.ConfigError, match=f'^{line}$'):
    _config('--local_kernel=pallas', flag)
  _config(flag)  # The XLA path takes it.


def test_kernel_names_and_the_cnn_are_refused():
  with pytest.raises(config.ConfigError, match='^--local_kernel: unknown value'):
    _config('--local_kernel=triton')
  with pytest.raises(config.ConfigError,
                     match='^--local_kernel: pallas trains --model=mlp only, not --model=cnn$'):
    config.validate(config.RunConfig(dataset='fer2013', model='cnn', local_kernel='pallas'))
  assert _config('--local_kernel=pallas').local_kernel == 'pallas'
  assert config.RunConfig().local_kernel == 'xla'


def test_a_sweep_over_what_the_kernel_cannot_train_is_refused():
  from fedar_jax import sweep  # Defines the sweep list flags on absl's global FLAGS.
  values = flags.FlagValues()
  for name in sweep.SWEEP_FLAGS:
    flags.DEFINE_list(name, [], '', flag_values=values)
  values(['prog', '--losses=ce,focal'])
  with pytest.raises(config.ConfigError, match='^--local_kernel: pallas trains --loss=ce only, '
                     'not --loss=focal'):
    sweep.sweep_lists(values, config.RunConfig(local_kernel='pallas'))
