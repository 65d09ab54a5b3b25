"""Resampler options and fallback reporting through the round, the CLI and metrics.csv."""
import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import client, models, resample, train
from fedar_jax import fedar_round
from fedar_jax.resample import gate
from fedar_jax.config import ConfigError, RunConfig, validate
from tests.test_main import SMALL, run_cli


def test_options_reach_the_sampler_and_zero_means_the_imblearn_default():
  exp = train.build(RunConfig(num_clients=2, samples_per_client=22, feature_dim=4,
                              test_per_class=2, resampler='borderline_smote1', m_neighbors=3,
                              n_neighbors=7))
  bound = dict(exp.spec.resampler.bound)
  assert bound['m_neighbors'] == 3 and bound['kind'] == 1
  assert 'k_neighbors' not in bound and 'n_neighbors' not in bound  # default / not taken
  # kmeans_smote's default k_neighbors is 2, smote's 5: visible in the fallback rule.
  x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
  y = np.repeat([0, 1], [17, 3]).astype(np.int32)
  m = np.ones(20, bool)
  key = jax.random.key(0)
  smote = resample.make_resampler('smote', num_classes=2, capacity=20, k_neighbors=0)
  smote2 = resample.make_resampler('smote', num_classes=2, capacity=20, k_neighbors=2)
  assert bool(smote.resample(key, x, y, m)[3])          # 3 rows <= k = 5
  assert not bool(smote2.resample(key, x, y, m)[3])     # 3 rows > k = 2


def test_negative_neighbour_flags_are_rejected():
  for flag in ('k_neighbors', 'm_neighbors', 'n_neighbors'):
    with pytest.raises(ConfigError, match=f'--{flag}'):
      validate(RunConfig(**{flag: -1}))


def test_client_stats_report_fallback_only_when_the_gate_fires():
  model = models.MLP(num_classes=2, hidden=(4,))
  x = np.random.default_rng(1).normal(size=(20, 4)).astype(np.float32)
  params = model.init(jax.random.key(0), jnp.asarray(x[:1]))
  r = resample.make_resampler('smote', num_classes=2, capacity=20)
  single = np.repeat([0, 1], [19, 1]).astype(np.int32)     # a 1-row class: imblearn raises
  mask = np.ones(20, bool)
  fedar = client.fedar_client(model.apply, r, 2, 1, 8)
  run = lambda y, thr: client.client_update(fedar, params, jax.random.key(0), x, y, mask, thr,
                                            1e-3)[1]
  assert bool(run(single, 1.5).fallback)
  assert not bool(run(single, 100.0).fallback)             # gate closed: nothing resampled
  assert not bool(run(np.repeat([0, 1], [12, 8]).astype(np.int32), 1.0).fallback)


# 22 rows at IR 10: every client has 2 minority rows, so smote with k = 2 falls back
# on all 3 clients, nearmiss3 (2 neighbours) and Borderline (m = 4) on none.
@pytest.mark.parametrize('name,opts,expected', [('nearmiss3', {'n_neighbors': 2}, 0),
                                                ('borderline_smote2', {'m_neighbors': 4}, 0),
                                                ('smote', {'k_neighbors': 2}, 3)])
def test_cli_runs_new_samplers_and_writes_fallback_clients(tmp_path, name, opts, expected):
  workdir = tmp_path / 'run'
  flags = [f'--{k}={v}' for k, v in opts.items()]
  proc = run_cli(f'--workdir={workdir}', *SMALL, f'--resampler={name}', *flags)
  assert proc.returncode == 0, proc.stderr
  with open(workdir / 'metrics.csv') as f:
    rows = list(csv.DictReader(f))
  # Every round: the clients whose gate fires and whose resampler (same keys) falls back.
  exp = train.build(RunConfig(num_clients=3, samples_per_client=22, feature_dim=8, rounds=2,
                              test_per_class=10, local_epochs=1, resampler=name, **opts))
  c, r = exp.data.clients, exp.spec.resampler
  counts = jax.vmap(lambda y, m: gate.class_counts(y, m, 2))(c.y, c.mask)
  fire = np.asarray(jax.vmap(gate.imbalance_ratio)(counts)) > RunConfig.threshold
  for row in rows:
    keys = fedar_round.client_keys(exp.hparams.seed, int(row['round']) - 1, c.client_id)
    k_res = jax.vmap(lambda k: jax.random.split(k)[0])(keys)
    fell_back = np.asarray(jax.vmap(r.resample)(k_res, c.x, c.y, c.mask)[3])
    assert int(row['fallback_clients']) == int(np.sum(fire & fell_back)) == expected


def test_cli_rejects_a_bad_neighbour_flag(tmp_path):
  proc = run_cli(f'--workdir={tmp_path / "w"}', *SMALL, '--n_neighbors=-2')
  assert proc.returncode == 2 and 'n_neighbors' in proc.stderr and 'Traceback' not in proc.stderr
