"""--data_dtype: client rows stored in bfloat16 on the device, arithmetic in float32."""
import json
import types

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import cohort_stream
from fedar_jax import data_dtype
from fedar_jax import fedar_round
from fedar_jax import pretraining
from fedar_jax import resample
from fedar_jax import sharding
from fedar_jax import workdir
from fedar_jax.config import ConfigError, RunConfig, validate
from fedar_jax.data import federated
from tests import helpers


def test_unknown_dtype_is_refused_naming_the_flag():
  with pytest.raises(ConfigError, match="--data_dtype: unknown value 'float16'"):
    validate(RunConfig(data_dtype='float16'))
  with pytest.raises(ValueError, match='data dtype'):
    data_dtype.numpy_dtype('int8')


def test_stored_rows_take_half_the_bytes_and_float32_is_untouched():
  x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
  assert data_dtype.stored(x, 'float32') is x
  half = data_dtype.stored(x, 'bfloat16')
  assert half.dtype == jnp.bfloat16 and half.nbytes == x.nbytes // 2
  back = data_dtype.computed(half)
  assert back.dtype == jnp.float32
  np.testing.assert_allclose(back, x, rtol=2 ** -8)
  placed = sharding.shard_clients(
      data_dtype.stored_clients(helpers.unequal_clients(sizes=(8, 7), d=4)[0], 'bfloat16'),
      sharding.make_mesh())
  assert placed.x.dtype == jnp.bfloat16 and placed.y.dtype == jnp.int32


def test_streamed_cohorts_compile_for_the_stored_dtype():
  source = types.SimpleNamespace(capacity=5, row_shape=(4,))
  shapes = cohort_stream.cohort_shapes(source, 2, sharding.make_mesh(), 'bfloat16')
  assert shapes.x.dtype == jnp.bfloat16 and shapes.x.shape == (2, 5, 4)
  assert cohort_stream.cohort_shapes(source, 2, sharding.make_mesh()).x.dtype == jnp.float32


@pytest.fixture(scope='module')
def updates():
  """({'float32': (test predictions, training loss) of one client's update on float32 rows,
  'bfloat16': the same on its rows rounded to bfloat16, what the float32 arithmetic of the
  bfloat16 path reads}, the jaxpr of the SMOTE round on bfloat16 rows, the prepared rows'
  shapes of `--resample_every=once` from bfloat16 rows). One compiled update: that the
  bfloat16 path computes in float32 is `test_every_matmul_of_the_bfloat16_round_is_float32`."""
  clients, test = helpers.unequal_clients(sizes=(30, 24), d=6)
  spec, state = helpers.small_spec(clients, resampler='none', epochs=2)
  hp = fedar_round.HParams.create(1.5, 0.01, 0)
  half = data_dtype.stored_clients(clients, 'bfloat16')
  update = jax.jit(fedar_round.local_update_fn(spec))
  predict = jax.jit(lambda p: jnp.argmax(spec.apply_fn(p, test.x), axis=-1))
  out = {}
  for name, x in (('float32', clients.x), ('bfloat16', np.asarray(half.x, np.float32))):
    params, stats = update(state.params, jax.random.key(0), x[0], clients.y[0],
                           clients.mask[0], hp.threshold, hp.learning_rate)
    out[name] = np.asarray(predict(params)), float(stats.loss)
  smote = spec._replace(resampler=resample.make_resampler(
      'smote', num_classes=3, capacity=clients.x.shape[1],
      max_class_count=federated.max_class_count(clients, 3)))
  jaxpr = jax.make_jaxpr(fedar_round.make_round(smote))(state, half, test, hp)
  prepared = jax.eval_shape(pretraining.make_prepare_clients(smote), half, hp)
  return out, jaxpr, prepared, test


def test_resampled_rows_stay_bfloat16_on_the_device(updates):
  prepared = updates[2]
  assert prepared.x.x.dtype == jnp.bfloat16 and prepared.x.x.shape[0] == 2


def test_bfloat16_results_are_close_to_float32(updates):
  out, _, _, test = updates
  (full, full_loss), (half, half_loss) = out['float32'], out['bfloat16']
  assert abs(full_loss - half_loss) < 1e-2
  assert np.mean(full == half) >= 0.9
  assert abs(np.mean(full == test.y) - np.mean(half == test.y)) < 0.05


def test_every_matmul_of_the_bfloat16_round_is_float32(updates):
  jaxpr = updates[1]
  operands = []

  def walk(jp):
    for eqn in jp.eqns:
      if eqn.primitive.name == 'dot_general':
        operands.extend(v.aval.dtype for v in eqn.invars)
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)
  walk(jaxpr.jaxpr)
  assert len(operands) > 10 and all(d == jnp.float32 for d in operands)


def test_a_resume_refuses_a_changed_dtype(tmp_path):
  cfg = RunConfig(num_clients=2, samples_per_client=20)
  (tmp_path / 'config.json').write_text(json.dumps(workdir.run_settings(cfg)))
  workdir.check_resume(str(tmp_path), 'config.json', workdir.run_settings(cfg))
  with pytest.raises(ConfigError, match='--data_dtype: .* holds a run with '
                     '--data_dtype=float32, got bfloat16'):
    workdir.check_resume(str(tmp_path), 'config.json',
                         workdir.run_settings(cfg.replace(data_dtype='bfloat16')))
