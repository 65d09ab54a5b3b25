"""Streamed cohorts (cohort_stream.py) equal the in-memory sampled run of the same data."""
import csv

import numpy as np
import pytest

from fedar_jax import cohort_stream
from fedar_jax import loop
from fedar_jax import sampling
from fedar_jax import sharding
from fedar_jax.config import ConfigError, RunConfig
from fedar_jax.data import load
from fedar_jax.data.cohort_source import InMemorySource
from fedar_jax.data.errors import DataError

CFG = RunConfig(num_clients=9, samples_per_client=30, feature_dim=8, rounds=4, local_epochs=1,
                test_per_class=20, learning_rate=0.05, clients_per_round=4, client_block=2,
                checkpoint_every=2)


def source_of(cfg: RunConfig) -> InMemorySource:
  return InMemorySource(load.load_federated(cfg.replace(seed=cfg.effective_data_seed)))


def rows_of(workdir):
  with open(workdir / 'metrics.csv') as f:
    return [{k: v for k, v in row.items() if k != 'round_s'} for row in csv.DictReader(f)]


@pytest.mark.parametrize('seed,round_index,clients,per_round', [
    (7, 0, 50, 6), (7, 2, 50, 6), (0, 0, 1, 1), (3, 5, 1000, 17), (7, 2, 100_003, 1000),
    (0, 1, 1_000_000, 1000), (1, 4, cohort_stream.HOST_SORT_MAX + 3, 100)])
def test_cohort_ids_are_the_in_memory_rounds_sample(seed, round_index, clients, per_round):
  ids = cohort_stream.cohort_ids(seed, round_index, clients, per_round, per_round + 2)
  want = np.asarray(sampling.sample_clients(np.int32(seed), np.int32(round_index), clients,
                                            per_round))
  np.testing.assert_array_equal(ids[:per_round], want)
  np.testing.assert_array_equal(ids[per_round:], [want[0]] * 2)


def test_partial_sorts_are_the_stable_argsort():
  rng = np.random.default_rng(0)
  for high in (2**32, 2**17, 3):  # Keys in many buckets, in few, all tied in one.
    keys = rng.integers(0, high, 5000, dtype=np.uint64).astype(np.uint32)
    order = np.argsort(keys, kind='stable')
    for count in (0, 1, 700, 5000):
      np.testing.assert_array_equal(cohort_stream._at_ranks(keys, np.arange(count)), order[:count])
    ranks = rng.permutation(5000)[:300]
    np.testing.assert_array_equal(cohort_stream._at_ranks(keys, ranks), order[ranks])


@pytest.mark.parametrize('extra', [
    {},
    {'resample_every': 'round', 'resampler': 'borderline_smote1'},
    {'attacker_fraction': 0.3, 'attack': 'scale', 'aggregator': 'median', 'client_block': 0},
    {'dp': 'adaptive', 'dp_noise_multiplier': 0.5, 'dp_clip_norm': 0.5},
])
def test_streamed_run_equals_in_memory_run(tmp_path, extra):
  cfg = CFG.replace(**extra)
  loop.train_and_evaluate(cfg, str(tmp_path / 'memory'))
  source = source_of(cfg)
  traces = []
  summary = loop.train_and_evaluate(cfg, str(tmp_path / 'stream'), source=_Counting(source,
                                                                                     traces))
  memory, streamed = rows_of(tmp_path / 'memory'), rows_of(tmp_path / 'stream')
  assert len(streamed) == cfg.rounds
  assert memory == streamed
  assert {row['resampled_clients'] for row in streamed} != {'0'}
  assert all((row['epsilon'] != 'inf') == ('dp' in extra) for row in streamed)
  # Rounds 1..4 each read their own cohort, once (round 1 while the round compiled).
  assert traces == [1, 2, 3, 4]
  assert summary['round_s'] is not None


class _Counting:
  """A source that records which rounds' cohorts were read (by the first id's round)."""

  def __init__(self, source, reads):
    self.source, self.reads = source, reads
    for name in ('num_clients', 'capacity', 'row_shape', 'class_names', 'test',
                 'max_class_count'):
      setattr(self, name, getattr(source, name))

  def cohort(self, ids):
    if len(ids) > 1:
      self.reads.append(len(self.reads) + 1)
    return self.source.cohort(ids)

  def attackers(self, ids):
    return self.source.attackers(ids)


def test_streamed_resume_equals_uninterrupted(tmp_path):
  source = source_of(CFG)
  loop.train_and_evaluate(CFG, str(tmp_path / 'whole'), source=source)
  loop.train_and_evaluate(CFG.replace(rounds=2), str(tmp_path / 'split'), source=source)
  loop.train_and_evaluate(CFG, str(tmp_path / 'split'), source=source)
  assert rows_of(tmp_path / 'whole') == rows_of(tmp_path / 'split')


class _Failing(InMemorySource):
  def __init__(self, data, fail_at):
    super().__init__(data)
    self.reads, self.fail_at = 0, fail_at

  def cohort(self, ids):
    if len(ids) > 1:
      self.reads += 1
      if self.reads == self.fail_at:
        raise OSError('shard 3: input/output error\n(disk)')
    return super().cohort(ids)


def test_a_failed_read_is_one_line(tmp_path):
  source = _Failing(source_of(CFG).data, fail_at=3)
  with pytest.raises(DataError, match=r"^--population: reading round 3's cohort failed: "
                     r'shard 3: input/output error \(disk\)$'):
    loop.train_and_evaluate(CFG, str(tmp_path / 'w'), source=source)
  # Rounds 1 and 2 ran and were checkpointed (--checkpoint_every=2): a rerun resumes.
  assert len(rows_of(tmp_path / 'w')) == 2


def test_streamed_round_compiles_once(tmp_path):
  from fedar_jax import fedar_round
  traced = []
  make_round = fedar_round.make_round

  def counting(spec):
    fn = make_round(spec)

    def round_step(*args):
      traced.append(1)
      return fn(*args)
    return round_step
  fedar_round.make_round = counting
  try:
    loop.train_and_evaluate(CFG.replace(rounds=3), str(tmp_path / 'w'), source=source_of(CFG))
  finally:
    fedar_round.make_round = make_round
  assert len(traced) == 1


def test_population_size_must_match(tmp_path):
  with pytest.raises(ConfigError, match='--num_clients: 8 differs'):
    loop.setup(CFG.replace(num_clients=8), source=source_of(CFG))


def test_stream_holds_at_most_two_cohorts():
  source = source_of(CFG)
  mesh = sharding.make_mesh()
  spec = cohort_stream.StreamSpec(0, 4, 4, False)
  stream = cohort_stream.CohortStream(source, spec, mesh, last_round=3)
  try:
    first = stream.take(1)
    np.testing.assert_array_equal(first.ids, cohort_stream.cohort_ids(0, 0, 9, 4, 4))
    assert stream._requested == 2  # Round 2 is being read; round 3 is not.
    assert stream.take(2).round == 2 and stream._requested == 3
    assert stream.take(3).round == 3 and stream._requested == 3
  finally:
    stream.close()
  stream._thread.join(timeout=30)
  assert not stream._thread.is_alive()


def test_close_stops_the_thread_while_a_cohort_waits():
  stream = cohort_stream.CohortStream(source_of(CFG), cohort_stream.StreamSpec(0, 4, 4, False),
                                      sharding.make_mesh(), last_round=3)
  stream.take(1)  # Round 2 is read and waits to be handed over.
  stream.close()
  stream._thread.join(timeout=30)
  assert not stream._thread.is_alive()


def test_two_processes_read_their_slots_and_equal_one(tmp_path):
  import os
  import subprocess
  import sys
  from tests import test_distributed
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_CPU_COLLECTIVES_IMPLEMENTATION'] = 'gloo'
  address = f'127.0.0.1:{test_distributed.free_port()}'
  run = lambda *args: [sys.executable, '-m', 'tests.streamed_process', *map(str, args)]
  outs = test_distributed._two_processes(lambda i: run(tmp_path / 'multi', address, i), env, 400)
  single = subprocess.run(run(tmp_path / 'single'), cwd=test_distributed.ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
  assert single.returncode == 0, single.stderr[-3000:]
  # 4 rounds x 4 slots (+ 1 row to build the model): each process read its 2 slots a round.
  assert 'read 17 client rows' in single.stdout
  assert all('read 9 client rows' in out for out, _ in outs), outs
  multi, one = rows_of(tmp_path / 'multi'), rows_of(tmp_path / 'single')
  assert len(multi) == len(one) == CFG.rounds
  for a, b in zip(multi, one):
    np.testing.assert_allclose([float(v) for v in a.values()], [float(v) for v in b.values()],
                               atol=2e-5, rtol=0)


def test_resampling_once_recomputes_a_clients_rows_identically():
  import jax
  from fedar_jax import pretraining
  from fedar_jax import train
  cfg = CFG.replace(imbalance_ratio=4.0)
  source = source_of(cfg)
  exp = train.build_streamed(cfg, source)
  prepare = jax.jit(pretraining.make_prepare_clients(exp.spec))
  a = prepare(source.cohort(np.array([0, 1, 2, 3], np.int32)), exp.hparams)
  b = prepare(source.cohort(np.array([3, 5, 6, 8], np.int32)), exp.hparams)
  whole = prepare(source.cohort(np.arange(9, dtype=np.int32)), exp.hparams)
  rows = lambda data, slot: jax.tree.map(lambda v: np.asarray(v)[slot], (data.x, data.y,
                                                                         data.mask))
  assert np.asarray(a.x.facts.resampled)[3]  # Client 3 was resampled (synthetic rows drawn).
  for got in (rows(b, 0), rows(whole, 3)):
    jax.tree.map(np.testing.assert_array_equal, got, rows(a, 3))


@pytest.fixture
def population(tmp_path):
  """A population directory written with CFG's data flags (fedar-population)."""
  from fedar_jax.data import population_writer
  out = str(tmp_path / 'population')
  population_writer.write(CFG, out)
  return out


def _config(*argv):
  from absl import flags
  from fedar_jax import cli
  values = flags.FlagValues()
  cli.define_config_flags(values)
  values(['prog', *argv])
  return cli.config_from_flags(values)


def test_population_flag_takes_the_data_flags_from_the_population(population):
  cfg = _config(f'--population={population}', '--clients_per_round=4')
  assert (cfg.num_clients, cfg.samples_per_client, cfg.feature_dim, cfg.test_per_class,
          cfg.data_seed) == (9, 30, 8, 20, 0)
  assert _config(f'--population={population}', '--num_clients=9').num_clients == 9
  with pytest.raises(DataError, match=f'^--num_clients: is 8; {population} was built with 9$'):
    _config(f'--population={population}', '--num_clients=8')
  with pytest.raises(DataError, match='^--data_seed: draws the data with seed 3'):
    _config(f'--population={population}', '--data_seed=3')


@pytest.mark.parametrize('extra', [[], ['--standardize=federated', '--resample_every=round']])
def test_run_from_a_population_directory_equals_in_memory_run(tmp_path, population, extra):
  cfg = _config(f'--population={population}', '--clients_per_round=4', '--client_block=2',
                '--rounds=3', '--local_epochs=1', '--learning_rate=0.05', '--checkpoint_every=2',
                *extra)
  loop.train_and_evaluate(cfg, str(tmp_path / 'stream'))
  loop.train_and_evaluate(cfg.replace(population=''), str(tmp_path / 'memory'))
  assert rows_of(tmp_path / 'stream') == rows_of(tmp_path / 'memory')


def test_streamed_sweep_equals_in_memory_sweep(tmp_path):
  from fedar_jax import sweep_data
  from fedar_jax import sweep_runner
  base = CFG.replace(rounds=3)
  axes = sweep_runner.SweepAxes.of(base, thresholds=(1.0, 3.0), resamplers=('smote', 'none'))
  mesh = sweep_runner.mesh_for(axes)
  sweep_runner.run_sweep(base, axes, str(tmp_path / 'memory'), stream=open('/dev/null', 'w'))
  report = sweep_runner.run_sweep(
      base, axes, str(tmp_path / 'stream'), stream=open('/dev/null', 'w'), mesh=mesh,
      data=sweep_data.build_streamed(base, source_of(base), mesh))
  assert [g['traces'] for g in report['groups']] == [1, 1]
  read = lambda w: [{k: v for k, v in row.items() if k != 'round_s'}
                    for row in csv.DictReader(open(tmp_path / w / 'sweep.csv'))]
  memory, streamed = read('memory'), read('stream')
  assert len(streamed) == 2 * 2 * 3 and memory == streamed


def test_streamed_sweep_refuses_data_lists_and_seed_lists(population):
  from absl import flags
  from fedar_jax import cli
  from fedar_jax import sweep
  values = flags.FlagValues()
  cli.define_config_flags(values)
  for name, entry in sweep.SWEEP_FLAGS.items():
    flags.DEFINE_list(name, [], entry.help, flag_values=values)

  def lists(*argv):
    values.unparse_flags()
    values(['prog', f'--population={population}', '--clients_per_round=4', *argv])
    return sweep.sweep_lists(values, cli.config_from_flags(values))
  assert lists('--thresholds=1,2', '--seeds=3')['thresholds'] == (1.0, 2.0)
  with pytest.raises(ConfigError, match=f'^--imbalance_ratios: --population={population} is '
                     r'one data set; write one population per value \(fedar-population '
                     r'--out=DIR --imbalance_ratio=VALUE\) and sweep each$'):
    lists('--imbalance_ratios=2,4')
  with pytest.raises(ConfigError, match=f'^--seeds: --population={population} streams one '
                     'cohort per round, sampled with --seed; run one sweep per seed$'):
    lists('--seeds=0,1')
