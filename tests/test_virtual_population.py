import csv

import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import config as config_lib
from fedar_jax import loop
from fedar_jax import sampling
from fedar_jax.data import federated, load, synthetic, virtual_population
from fedar_jax.data.cohort_source import InMemorySource
from fedar_jax.data.errors import DataError

SMALL = config_lib.RunConfig(num_clients=12, samples_per_client=33, feature_dim=7,
                             test_per_class=9, clients_per_round=4, seed=5, num_classes=3)


def _equal(a, b):
  for name in ('x', 'y', 'mask', 'client_id'):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert np.asarray(getattr(a, name)).dtype == np.asarray(getattr(b, name)).dtype, name


@pytest.mark.parametrize('skew', [{}, {'imbalance_ratio_max': 8.0}, {'data_seed': 2},
                                  {'partition': 'dirichlet', 'dirichlet_alpha': 0.4}])
def test_cohorts_equal_the_in_memory_population_bit_for_bit(skew):
  cfg = SMALL.replace(**skew)
  memory = InMemorySource(load.load_federated(cfg.replace(seed=cfg.effective_data_seed)))
  virtual = virtual_population.source(cfg.replace(virtual_population=True))
  assert isinstance(virtual, virtual_population.VirtualPopulation)
  for name in ('num_clients', 'capacity', 'row_shape', 'class_names'):
    assert getattr(virtual, name) == getattr(memory, name), name
  for name in ('x', 'y', 'mask'):
    np.testing.assert_array_equal(getattr(virtual.test, name), getattr(memory.test, name))
  # The rounds' sampled cohorts, then any order with repeats.
  for r in range(3):
    ids = np.asarray(sampling.sample_clients(jnp.int32(SMALL.seed), jnp.int32(r), 12, 4))
    _equal(virtual.cohort(ids), memory.cohort(ids))
  # The resamplers' static bound covers every client's largest class.
  assert virtual.max_class_count >= federated.max_class_count(memory.data.clients, 3)
  _equal(virtual.cohort(np.array([11, 0, 11, 3])), memory.cohort(np.array([11, 0, 11, 3])))
  assert virtual.attackers(np.arange(4)) is None


def test_cohort_of_a_population_of_any_int32_size():
  n = 2 ** 31 - 1
  cfg = SMALL.replace(num_clients=n, clients_per_round=3)
  assert config_lib.is_virtual(config_lib.validate(cfg))  # Would need ~10^4 GiB in memory.
  source = virtual_population.source(cfg)
  ids = np.array([n - 1, 0, 123456789], np.int32)
  cohort = source.cohort(ids)
  assert cohort.x.shape == (3, 33, 7) and source.num_clients == n
  # Client c depends on (seed, c) only: the same rows as a population of 12 for client 0.
  small, _ = synthetic.synthetic_federated(5, 12, 33, 3, 7, SMALL.imbalance_ratio, 9)
  np.testing.assert_array_equal(cohort.x[1], small.x[0])
  with pytest.raises(ValueError, match='client ids'):
    source.cohort(np.array([-1]))


def test_in_memory_configs_are_not_virtual():
  assert virtual_population.source(SMALL) is None
  assert virtual_population.source(config_lib.RunConfig()) is None
  assert not config_lib.is_virtual(SMALL.replace(virtual_population=True, clients_per_round=0))


@pytest.mark.parametrize('changes,flag', [
    ({'virtual_population': True, 'clients_per_round': 0}, 'virtual_population'),
    ({'virtual_population': True, 'attacker_fraction': 0.25}, 'attacker_fraction'),
    ({'num_clients': 10 ** 9, 'attacker_fraction': 0.25}, 'attacker_fraction'),
    ({'num_clients': 10 ** 9, 'clients_per_round': 0}, 'num_clients'),
    ({'num_clients': 10 ** 9, 'clients_per_round': 10 ** 8}, 'clients_per_round'),
    ({'virtual_population': True, 'standardize': 'federated'}, 'standardize'),
])
def test_bad_virtual_settings_name_the_flag(changes, flag):
  with pytest.raises(config_lib.ConfigError, match=f'^--{flag}: '):
    config_lib.validate(SMALL.replace(**changes))


def test_virtual_population_is_not_loaded_whole():
  with pytest.raises(DataError, match='virtual population'):
    load.load_federated(SMALL.replace(virtual_population=True))


def _rows(path):
  with open(path) as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    row.pop('round_s')
  return rows


@pytest.mark.parametrize('resample_every,standardize', [('once', 'none'), ('round', 'client')])
def test_virtual_run_equals_the_in_memory_run(tmp_path, resample_every, standardize):
  # With clients evaluated on their own rows: in the round in memory, beside it streamed.
  cfg = SMALL.replace(rounds=3, local_epochs=1, checkpoint_every=2, num_clients=9,
                      resample_every=resample_every, eval_clients=3, standardize=standardize)
  loop.train_and_evaluate(cfg, str(tmp_path / 'memory'))
  virtual = cfg.replace(virtual_population=True)
  summary = loop.train_and_evaluate(virtual, str(tmp_path / 'virtual'))
  memory = _rows(tmp_path / 'memory' / 'metrics.csv')
  assert memory == _rows(tmp_path / 'virtual' / 'metrics.csv')
  assert memory[0]['client_gmean_p10'] and len(memory) == 3
  assert summary['config']['virtual_population']


def test_virtual_sweep_with_client_evaluation_equals_the_in_memory_sweep(tmp_path):
  from fedar_jax import sweep_data, sweep_runner
  base = SMALL.replace(rounds=2, local_epochs=1, num_clients=9, eval_clients=3,
                       resample_every='round')
  axes = sweep_runner.SweepAxes.of(base, thresholds=(1.0, 3.0))
  mesh = sweep_runner.mesh_for(axes)
  devnull = open('/dev/null', 'w')
  sweep_runner.run_sweep(base, axes, str(tmp_path / 'memory'), stream=devnull)
  virtual = base.replace(virtual_population=True)
  sweep_runner.run_sweep(virtual, axes, str(tmp_path / 'virtual'), stream=devnull, mesh=mesh,
                         data=sweep_data.build_streamed(
                             virtual, virtual_population.source(virtual), mesh))
  memory = _rows(tmp_path / 'memory' / 'sweep.csv')
  assert len(memory) == 4 and memory[-1]['client_minority_recall_p10']
  assert memory == _rows(tmp_path / 'virtual' / 'sweep.csv')


def test_virtual_sweep_refuses_data_lists_and_seed_lists():
  from absl import flags
  from fedar_jax import cli, sweep
  values = flags.FlagValues()
  cli.define_config_flags(values)
  for name, entry in sweep.SWEEP_FLAGS.items():
    flags.DEFINE_list(name, [], entry.help, flag_values=values)

  def lists(*argv):
    values.unparse_flags()
    values(['prog', '--virtual_population', '--clients_per_round=4', *argv])
    return sweep.sweep_lists(values, cli.config_from_flags(values))
  assert lists('--thresholds=1,2')['thresholds'] == (1.0, 2.0)
  for flag in ('--imbalance_ratios=2,4', '--seeds=0,1'):
    with pytest.raises(config_lib.ConfigError, match='a virtual population is one data set'):
      lists(flag)
