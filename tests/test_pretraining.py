"""--resample_every=once: the pre-training step against the reference loop and against `round`."""
import csv

import jax
import numpy as np
import pytest

from fedar_jax import pretraining
from fedar_jax import reference
from fedar_jax import fedar_round
from fedar_jax import sweep_runner
from fedar_jax import loop
from fedar_jax.config import ConfigError, RunConfig, validate
from tests import helpers


def _assert_round_equal(o_fast, o_slow, s_fast, s_slow):
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0),
               s_fast.params, s_slow.params)
  for name in ('resampled', 'fallback', 'n_real', 'n_train'):
    np.testing.assert_array_equal(getattr(o_fast.clients, name), getattr(o_slow.clients, name))
  np.testing.assert_allclose(o_fast.clients.ir, o_slow.clients.ir, rtol=1e-6)
  np.testing.assert_array_equal(o_fast.metrics['confusion'], o_slow.metrics['confusion'])


@pytest.mark.parametrize('resampler,block', [('smote', 0), ('random_under', 2)])
def test_resample_once_equals_reference_loop(resampler, block):
  clients, test = helpers.unequal_clients()
  spec, state = helpers.small_spec(clients, resampler=resampler)
  spec = spec._replace(client_block=block)
  hp = fedar_round.HParams.create(threshold=1.5, learning_rate=0.01, seed=3)
  prepared = jax.jit(pretraining.make_prepare_clients(spec))(clients, hp)
  fast = jax.jit(fedar_round.make_round(pretraining.round_spec(spec)))
  slow = reference.make_reference_round(spec, resample_every='once')
  every_round = jax.jit(fedar_round.make_round(spec))
  s_fast = s_slow = s_round = state
  for r in range(3):
    s_fast, o_fast = fast(s_fast, prepared, test, hp)
    s_slow, o_slow = slow(s_slow, clients, test, hp)
    s_round, o_round = every_round(s_round, clients, test, hp)
    _assert_round_equal(o_fast, o_slow, s_fast, s_slow)
    assert np.any(o_fast.clients.resampled)  # The gate fired every round (stats reported).
    if r == 0:  # The first round's keys: round 1 equals --resample_every=round.
      _assert_round_equal(o_fast, o_round, s_fast, s_round)
  # Later rounds redraw the resampling with `round` only.
  assert not np.allclose(jax.tree.leaves(s_fast.params)[0], jax.tree.leaves(s_round.params)[0])


def test_prepared_rows_do_not_depend_on_when_they_are_computed():
  clients, test = helpers.unequal_clients()
  spec, _ = helpers.small_spec(clients)
  prepare_clients = jax.jit(pretraining.make_prepare_clients(spec))
  a = prepare_clients(clients, fedar_round.HParams.create(1.5, 0.01, 3))
  b = prepare_clients(clients, fedar_round.HParams.create(1.5, 0.02, 3))
  c = prepare_clients(clients, fedar_round.HParams.create(1.5, 0.01, 4))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(a.x.x, c.x.x)  # The seed draws the synthetic rows.


def test_once_with_latent_resampling_is_refused_naming_the_flag():
  cnn = RunConfig(dataset='fer2013', data_path='faces.csv', model='cnn',
                  latent_resampling='joint')
  with pytest.raises(ConfigError, match='^--resample_every: once is not supported'):
    validate(cnn)
  validate(cnn.replace(resample_every='round'))
  with pytest.raises(ConfigError, match="^--resample_every: unknown value 'twice'"):
    validate(RunConfig(resample_every='twice'))


@pytest.mark.parametrize('every', ['once', 'round'])
def test_sweep_point_equals_single_run_for_both_schedules(tmp_path, every):
  base = RunConfig(num_clients=3, samples_per_client=30, feature_dim=4, num_classes=2,
                   test_per_class=10, local_epochs=1, imbalance_ratio=4.0, rounds=3,
                   checkpoint_every=2, resample_every=every)
  axes = sweep_runner.SweepAxes.of(base, thresholds=(1.0, 5.0), seeds=(0, 3))
  [group] = sweep_runner.run_sweep(base, axes, str(tmp_path / 'sweep'))['groups']
  assert group['traces'] == 1
  with open(tmp_path / 'sweep' / 'sweep.csv') as f:
    rows = [r for r in csv.DictReader(f) if (r['threshold'], r['seed']) == ('1', '3')]
  loop.train_and_evaluate(base.replace(threshold=1.0, seed=3, data_seed=0), str(tmp_path / 'one'))
  with open(tmp_path / 'one' / 'metrics.csv') as f:
    want = list(csv.DictReader(f))
  assert len(rows) == len(want) == 3 and rows[0]['resampled_clients'] == '3'
  for got, w in zip(rows, want):
    for k in ('accuracy', 'gmean', 'train_loss', 'mean_client_ir', 'resampled_clients'):
      assert float(got[k]) == pytest.approx(float(w[k]), abs=1e-5), k
