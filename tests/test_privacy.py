"""Central DP (privacy.py), Poisson sampling and the epsilon accounting, on small shapes."""
import csv
import itertools
import math
import os
import subprocess
import sys
import textwrap

import dp_accounting
from dp_accounting import pld, rdp
from dp_accounting.privacy_accountant import NeighboringRelation
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import defences
from fedar_jax import fedar_round
from fedar_jax import loop
from fedar_jax import privacy
from fedar_jax import privacy_accounting
from fedar_jax import sampling
from fedar_jax import sweep_axes
from fedar_jax import sweep_runner
from fedar_jax.config import ConfigError, RunConfig, validate
from fedar_jax.methods import Methods, MethodParams
from tests import helpers
from tests.test_fedar_round import assert_round_equals_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Random oversampling: the DP tests do not depend on the resampler, and it compiles fastest.
BASE = RunConfig(num_clients=4, samples_per_client=40, feature_dim=8, num_classes=2,
                 test_per_class=30, local_epochs=1, rounds=3, checkpoint_every=2,
                 dp='fixed', dp_noise_multiplier=0.5, resampler='random_over')


def _rows(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def _dp_spec(clients, mechanism='fixed', **kw):
  spec, state = helpers.small_spec(clients, **kw)
  spec = spec._replace(methods=Methods(privacy=mechanism))
  if mechanism == 'adaptive':
    state = state._replace(dp_clip=jnp.float32(0.5))
  return spec, state


def _hp(seed=3, **dp):
  return fedar_round.HParams.create(1.5, 0.01, seed, MethodParams.create(**dp))


# --- The mechanism's pieces. ---

def test_clipping_is_exact_against_numpy():
  rng = np.random.default_rng(0)
  g = {'w': rng.normal(size=(3, 4)).astype(np.float32), 'b': rng.normal(size=4).astype(np.float32)}
  size = np.array([0.05, 0.3, 1.0, 0.1, 2.0, 1.0])  # Per client: some below the clip norm.
  q = {k: (v + size.reshape((-1,) + (1,) * v.ndim) * rng.normal(size=(6,) + v.shape))
       .astype(np.float32) for k, v in g.items()}
  q['b'][5, 0] = np.nan  # A client left out (use False) adds nothing, even a NaN.
  use = np.array([True, True, False, True, True, False])
  clip = 1.3
  total, norms = privacy.clipped_sum(q, g, jnp.asarray(use), jnp.float32(clip))
  d = {k: q[k].astype(np.float64) - g[k] for k in g}
  want_norms = np.sqrt(sum(np.sum(d[k].reshape(6, -1) ** 2, axis=1) for k in d))
  np.testing.assert_allclose(np.asarray(norms)[:5], want_norms[:5], rtol=1e-6)
  factor = np.minimum(1.0, clip / want_norms)
  for k in g:
    want = np.sum((d[k] * factor.reshape((-1,) + (1,) * (d[k].ndim - 1)))[use], axis=0)
    np.testing.assert_allclose(total[k], want, rtol=1e-5, atol=1e-6)
  # Some updates were clipped and some were not, and clipped ones have norm `clip`.
  assert np.any(want_norms[use] > clip) and np.any(want_norms[use] < clip)
  clipped_norms = np.sqrt(sum(np.sum((d[k] * factor.reshape((-1,) + (1,) * (d[k].ndim - 1)))
                                     .reshape(6, -1) ** 2, axis=1) for k in d))
  np.testing.assert_allclose(clipped_norms[use & (want_norms > clip)], clip, rtol=1e-6)
  assert float(privacy.centered_unclipped(norms, jnp.asarray(use), clip)) == (
      np.sum(want_norms[use] <= clip) - 0.5 * np.sum(use))


def test_noise_mean_and_std_within_stated_bounds_over_many_keys():
  # private_target of a zero sum at global 0 is pure noise, N(0, (sigma clip / m)^2) per
  # coordinate. n = 500 keys x 400 coordinates; bounds: 5 standard errors (a Gaussian
  # falls outside with probability 6e-7): |mean| < 5 s / sqrt(n), |std - s| < 5 s / sqrt(2n).
  sigma, clip, m = 1.7, 0.8, 4
  like = {'a': jnp.zeros((20, 10)), 'b': jnp.zeros(200)}
  keys = jax.vmap(lambda r: privacy.noise_key(jnp.int32(5), r))(jnp.arange(500))
  draws = jax.vmap(lambda k: privacy.private_target(like, like, k, jnp.float32(clip),
                                                    jnp.float32(sigma), m))(keys)
  x = np.concatenate([np.asarray(v).reshape(500, -1) for v in jax.tree.leaves(draws)], 1)
  n, s = x.size, sigma * clip / m
  assert abs(x.mean()) < 5 * s / math.sqrt(n)
  assert abs(x.std() - s) < 5 * s / math.sqrt(2 * n)
  # Leaves and rounds draw independently (no repeated draws).
  assert abs(np.corrcoef(x[:, 0], x[:, 300])[0, 1]) < 0.2
  assert not np.array_equal(x[0], x[1])


def test_noise_keys_differ_from_client_and_sampling_keys():
  seed, r = jnp.int32(3), jnp.int32(2)
  data = lambda k: tuple(np.asarray(jax.random.key_data(k)).ravel())
  noise = data(privacy.noise_key(seed, r))
  clients = {data(k) for k in fedar_round.client_keys(seed, r, jnp.arange(64))}
  sample_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), sampling._STREAM), r)
  assert noise not in clients and noise != data(sample_key)
  assert privacy.DP_STREAM != sampling._STREAM


def test_adaptive_clip_converges_to_the_target_quantile():
  # Norms uniform on [0, 10]: the q-quantile is 10 q. 1000 clients a round, count noise 1.
  rng = np.random.default_rng(0)
  clip, m = jnp.float32(0.5), 1000
  for target in (0.3, 0.8):
    c = clip
    for r in range(300):
      norms = jnp.asarray(rng.uniform(0, 10, m), jnp.float32)
      count = privacy.centered_unclipped(norms, jnp.ones(m, bool), c)
      c = privacy.next_clip(c, count, privacy.noise_key(jnp.int32(0), jnp.int32(r)), m,
                            jnp.float32(target), jnp.float32(0.2), jnp.float32(1.0))
    assert float(c) == pytest.approx(10 * target, rel=0.1), target


def test_effective_noise_multiplier_of_adaptive_clipping():
  # Andrew et al. 2021: sigma_delta = (z^-2 - (2 sigma_b)^-2)^-1/2 for a target z.
  z, sigma_b = 1.0, 2.0
  sigma_delta = (z ** -2 - (2 * sigma_b) ** -2) ** -0.5
  assert privacy.effective_noise_multiplier(sigma_delta, sigma_b) == pytest.approx(z)
  assert privacy.effective_noise_multiplier(0.0, sigma_b) == 0.0
  assert privacy.effective_noise_multiplier(1.5, None) == 1.5


# --- The round. ---

def test_sigma_zero_with_huge_clip_is_uniform_weight_fedavg():
  # Equal client sizes: FedAvg's sample weights are uniform, so plain FedAvg is the oracle;
  # the clipped update sum over m = C clients adds back to the mean model. One shape for
  # both data sets (capacity 30), so each round compiles once.
  clients, test = helpers.unequal_clients(sizes=(30, 30, 30, 30))
  spec, state = _dp_spec(clients, resampler='random_over')
  plain, _ = helpers.small_spec(clients, resampler='random_over')
  dp_round, plain_round = (jax.jit(fedar_round.make_round(s)) for s in (spec, plain))
  hp = _hp(dp_noise_multiplier=0.0, dp_clip_norm=1e6)
  s_dp, _ = dp_round(state, clients, test, hp)
  s_plain, _ = plain_round(state, clients, test, hp)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6, rtol=0),
               s_dp.params, s_plain.params)
  # With unequal sizes the DP mean is unweighted: it differs from FedAvg's weighted one.
  clients, test = helpers.unequal_clients(sizes=(30, 20, 25, 10))
  s_dp, _ = dp_round(state, clients, test, hp)
  s_plain, _ = plain_round(state, clients, test, hp)
  assert not np.allclose(jax.tree.leaves(s_dp.params)[0], jax.tree.leaves(s_plain.params)[0])


@pytest.mark.parametrize('mechanism', ['fixed', 'adaptive'])
def test_vmapped_dp_round_equals_reference_loop(mechanism):
  clients, test = helpers.unequal_clients()
  spec, state = _dp_spec(clients, mechanism)
  hp = _hp(dp_noise_multiplier=0.7, dp_clip_norm=0.5, dp_target_quantile=0.3)
  assert_round_equals_reference(spec._replace(matmul_precision='highest'), state, clients, test,
                                hp, rounds=3)
  if mechanism == 'adaptive':  # The clip norm moved, in both, the same way.
    from fedar_jax import reference
    fast = jax.jit(fedar_round.make_round(spec._replace(matmul_precision='highest')))
    slow = reference.make_reference_round(spec._replace(matmul_precision='highest'))
    a, _ = fast(state, clients, test, hp)
    b, _ = slow(state, clients, test, hp)
    assert float(a.dp_clip) == pytest.approx(float(b.dp_clip), rel=1e-6)
    assert float(a.dp_clip) != 0.5


def test_dp_round_in_client_blocks_equals_one_block():
  clients, test = helpers.unequal_clients(sizes=(40, 25, 33, 12, 20, 30))
  spec, state = _dp_spec(clients, 'adaptive')
  hp = _hp(dp_noise_multiplier=0.7, dp_clip_norm=0.5)
  one, _ = jax.jit(fedar_round.make_round(spec))(state, clients, test, hp)
  blocks, _ = jax.jit(fedar_round.make_round(spec._replace(client_block=2)))(
      state, clients, test, hp)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=0),
               (one.params, one.dp_clip), (blocks.params, blocks.dp_clip))


def test_sweeping_noise_multipliers_is_one_program_equal_to_single_runs(tmp_path):
  base = BASE.replace(dp='adaptive', rounds=2)
  axes = sweep_runner.SweepAxes.of(base, dp_noise_multipliers=(0.0, 1.0),
                                   dp_clip_norms=(0.5, 2.0))
  [group] = sweep_runner.run_sweep(base, axes, str(tmp_path / 'sweep'))['groups']
  assert group['points'] == 4 and group['traces'] == 1
  rows = _rows(tmp_path / 'sweep' / 'sweep.csv')
  header = list(rows[0])
  # The DP settings trail the metrics; epsilon is the last metrics.csv column.
  assert header[-6:] == ['epsilon', 'dp_clip_norm', 'dp_noise_multiplier', 'dp_target_quantile',
                         'dp_clip_learning_rate', 'dp_clip_count_stddev']
  single = tmp_path / 'single'
  loop.train_and_evaluate(base.replace(dp_noise_multiplier=1.0, dp_clip_norm=0.5, data_seed=0),
                          str(single))
  want = _rows(single / 'metrics.csv')
  got = [r for r in rows if (r['dp_noise_multiplier'], r['dp_clip_norm']) == ('1', '0.5')]
  assert len(got) == len(want) == 2
  for g, w in zip(got, want):
    for k in w:
      if k != 'round_s':
        assert float(g[k]) == pytest.approx(float(w[k]), abs=1e-5), k
  eps = {r['dp_noise_multiplier']: r['epsilon'] for r in rows if r['round'] == '2'}
  assert eps['0'] == 'inf' and 0 < float(eps['1']) < math.inf


def test_adaptive_run_resumes_to_the_numbers_of_an_uninterrupted_run(tmp_path):
  cfg = BASE.replace(dp='adaptive', rounds=4, checkpoint_every=2)
  loop.train_and_evaluate(cfg, str(tmp_path / 'whole'))
  loop.train_and_evaluate(cfg.replace(rounds=2), str(tmp_path / 'part'))
  loop.train_and_evaluate(cfg, str(tmp_path / 'part'))  # Resumes at round 2 with its clip.
  whole, part = _rows(tmp_path / 'whole' / 'metrics.csv'), _rows(tmp_path / 'part' / 'metrics.csv')
  assert [{k: v for k, v in r.items() if k != 'round_s'} for r in whole] == [
      {k: v for k, v in r.items() if k != 'round_s'} for r in part]


# --- Poisson sampling. ---

def test_poisson_capacity_bounds_the_overflow_probability():
  for n, m in ((10, 3), (100, 10), (1000, 50)):
    k = sampling.poisson_capacity(n, m)
    assert sampling.binomial_tail(n, m / n, k) <= sampling.POISSON_OVERFLOW
    assert k == n or sampling.binomial_tail(n, m / n, k - 1) > sampling.POISSON_OVERFLOW
  # The tail against a direct sum.
  n, q, k = 30, 0.2, 9
  direct = sum(math.comb(n, j) * q ** j * (1 - q) ** (n - j) for j in range(k + 1, n + 1))
  assert sampling.binomial_tail(n, q, k) == pytest.approx(direct, rel=1e-9)


def test_poisson_sample_joins_each_client_with_probability_q_and_counts_overflow():
  n, m = 50, 10
  cap = sampling.poisson_capacity(n, m)
  sample = jax.jit(lambda r: sampling.sample_poisson(jnp.int32(1), r, n, m, cap))
  counts, joined_total = [], np.zeros(n)
  for r in range(400):
    chosen, joined, overflow = sample(jnp.int32(r))
    picked = np.asarray(chosen)[np.asarray(joined)]
    assert int(overflow) == 0 and np.all(np.diff(picked) > 0)
    joined_total[picked] += 1
    counts.append(len(picked))
  # Mean cohort size m within 5 standard errors (binomial variance n q (1 - q) per round).
  assert abs(np.mean(counts) - m) < 5 * math.sqrt(n * 0.2 * 0.8 / 400)
  assert joined_total.min() > 0
  # A capacity below the cohort: the clients left out are counted, never silently dropped.
  _, joined, overflow = sampling.sample_poisson(jnp.int32(1), jnp.int32(0), n, m, 2)
  assert int(np.sum(joined)) == 2 and int(overflow) > 0


def test_poisson_round_uses_the_capacity_slots_and_expected_denominator():
  clients, test = helpers.unequal_clients(sizes=(30,) * 8)
  spec, state = _dp_spec(clients)
  spec = spec._replace(num_clients=8, clients_per_round=3, client_sampling='poisson')
  assert fedar_round.cohort_slots(spec, 8) == sampling.poisson_capacity(8, 3)
  _, out = jax.jit(fedar_round.make_round(spec))(state, clients, test, _hp())
  index = np.asarray(out.client_index)
  assert len(index) == sampling.poisson_capacity(8, 3)
  assert int(out.metrics['dropped_clients']) == 0


# --- Accounting. ---

def _direct(accountant, event, relation, rounds, delta):
  acc = (rdp.RdpAccountant(neighboring_relation=relation) if accountant == 'rdp'
         else pld.PLDAccountant(neighboring_relation=relation))
  acc.compose(event, rounds)
  return acc.get_epsilon(delta)


@pytest.mark.parametrize('accountant,sampling_mode,per_round', [
    ('rdp', 'poisson', 3), ('pld', 'poisson', 3), ('rdp', 'uniform', 3), ('rdp', 'uniform', 10),
    ('pld', 'uniform', 10)])
def test_epsilon_equals_dp_accounting_called_directly(accountant, sampling_mode, per_round):
  n, z, rounds, delta = 10, 1.1, 5, 1e-5
  got = privacy_accounting.cumulative_epsilons(accountant, sampling_mode, n, per_round, z,
                                               rounds, delta)
  gaussian = dp_accounting.GaussianDpEvent(z)
  if per_round == n:
    event, relation = gaussian, NeighboringRelation.ADD_OR_REMOVE_ONE
  elif sampling_mode == 'poisson':
    event = dp_accounting.PoissonSampledDpEvent(per_round / n, gaussian)
    relation = NeighboringRelation.ADD_OR_REMOVE_ONE
  else:
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        n, per_round, dp_accounting.GaussianDpEvent(z / 2))
    relation = NeighboringRelation.REPLACE_ONE
  # PLD: one round's distribution self-composed; the accountant's own composition of the
  # same discretised distribution agrees to float rounding of the FFTs (1e-6 relative).
  rel = 1e-9 if accountant == 'rdp' else 1e-6
  for r in (1, rounds):
    assert got[r - 1] == pytest.approx(_direct(accountant, event, relation, r, delta), rel=rel)
  assert all(a < b for a, b in zip(got, got[1:]))  # Cumulative.


def test_run_epsilons_use_the_effective_multiplier_and_inf_without_dp():
  cfg = BASE.replace(dp='adaptive', dp_clip_count_stddev=2.0, clients_per_round=2,
                     client_sampling='poisson')
  z = privacy.effective_noise_multiplier(0.5, 2.0)
  assert privacy_accounting.run_epsilons(cfg) == privacy_accounting.cumulative_epsilons(
      'rdp', 'poisson', 4, 2, z, 3, 1e-5)
  assert privacy_accounting.run_epsilons(cfg.replace(dp='none')) == (math.inf,) * 3
  assert privacy_accounting.epsilon_cell((math.inf,), 1) == 'inf'


# --- Flags. ---

@pytest.mark.parametrize('changes,pattern', [
    (dict(dp='gaussian'), "--dp: unknown value 'gaussian'"),
    (dict(dp_noise_multiplier=-1.0), '--dp_noise_multiplier: must be >= 0'),
    (dict(dp_clip_norm=0.0), '--dp_clip_norm: must be > 0'),
    (dict(dp_target_quantile=1.5), '--dp_target_quantile: must be in [0, 1]'),
    (dict(dp_clip_learning_rate=-0.1), '--dp_clip_learning_rate: must be >= 0'),
    (dict(dp_clip_count_stddev=0.0), '--dp_clip_count_stddev: must be > 0'),
    (dict(dp_delta=0.0), '--dp_delta: must be in (0, 1)'),
    (dict(dp_delta=1.0), '--dp_delta: must be in (0, 1)'),
    (dict(dp_delta=float('nan')), '--dp_delta: must be a finite float32 number'),
    (dict(dp_noise_multiplier=float('inf')), '--dp_noise_multiplier: must be a finite float32'),
    (dict(dp_clip_norm=1e39), '--dp_clip_norm: must be a finite float32'),
    (dict(dp_accountant='prv'), "--dp_accountant: unknown value 'prv'"),
    (dict(client_sampling='stratified'), "--client_sampling: unknown value 'stratified'"),
    (dict(client_sampling='poisson'), '--client_sampling: poisson needs --clients_per_round'),
    (dict(aggregator='median'), '--aggregator: median with --dp=fixed'),
    (dict(clients_per_round=2, dp_accountant='pld'), '--dp_accountant: pld has no event'),
    (dict(defence='fedar_1.5', resampler='smote'), '--defence: fedar_1.5 sets --dp=none'),
])
def test_bad_dp_settings_are_one_line_naming_the_flag(changes, pattern):
  with pytest.raises(ConfigError) as e:
    validate(BASE.replace(**changes))
  assert pattern in str(e.value) and '\n' not in str(e.value), str(e.value)


def test_usual_dp_settings_pass():
  validate(BASE)
  validate(BASE.replace(dp='adaptive', clients_per_round=2, client_sampling='poisson',
                        dp_accountant='pld'))
  validate(defences.apply(BASE.replace(dp='none', defence='fedar_dp')))
  validate(BASE.replace(attacker_fraction=0.25, attack='scale'))


MESH_SCRIPT = textwrap.dedent('''
    import os
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
    import jax
    import jax.numpy as jnp
    import numpy as np
    from fedar_jax import fedar_round
    from fedar_jax import sharding
    from fedar_jax.methods import Methods, MethodParams
    from tests import helpers

    C = 12
    clients, test = helpers.unequal_clients(sizes=(40, 25, 33, 12, 30, 18, 27, 22, 35, 16, 29, 21))
    spec, state = helpers.small_spec(clients, epochs=1)
    spec = spec._replace(methods=Methods(privacy='adaptive'), num_clients=C, clients_per_round=5,
                         client_sampling='poisson')
    state = state._replace(dp_clip=jnp.float32(0.5))
    hp = fedar_round.HParams.create(1.5, 0.01, 3, MethodParams.create(dp_noise_multiplier=0.7))

    def run(devices, **scale):
      st, out, _ = helpers.rounds_on_mesh(spec._replace(**scale), clients, test, state, hp,
                                          devices)
      return sharding.fetch((st.params, st.dp_clip)), sharding.fetch(out)

    (p1, c1), o1 = run(jax.devices()[:1])
    (p8, c8), o8 = run(jax.devices(), client_block=4)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-5, rtol=0), p8, p1)
    assert abs(float(c8) - float(c1)) < 1e-6 and float(c1) != 0.5
    real1, real8 = o1.client_index >= 0, o8.client_index >= 0
    np.testing.assert_array_equal(o8.client_index[real8], o1.client_index[real1])
    print('ok')
''')


def test_dp_with_poisson_cohorts_on_8_devices_in_blocks_equals_one_device():
  out = subprocess.run([sys.executable, '-c', MESH_SCRIPT], cwd=ROOT, capture_output=True,
                       text=True, env={**os.environ, 'PYTHONPATH': ROOT})
  assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr[-3000:]


def test_refused_dp_combination_is_one_line_exit_2_through_the_cli(tmp_path):
  out = subprocess.run([sys.executable, '-m', 'fedar_jax.main', f'--workdir={tmp_path / "w"}',
                        '--dp=adaptive', '--aggregator=krum'], cwd=ROOT, capture_output=True,
                       text=True, env={**os.environ, 'PYTHONPATH': ROOT})
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, out.stderr
  assert '--aggregator: krum with --dp=adaptive' in lines[0], lines
  assert not (tmp_path / 'w').exists()


def test_poisson_sampling_of_a_virtual_or_streamed_population_is_refused():
  from fedar_jax import config as config_lib
  cfg = RunConfig(num_clients=40, clients_per_round=4, virtual_population=True,
                  client_sampling='poisson', samples_per_client=20, feature_dim=4)
  with pytest.raises(ConfigError, match='--client_sampling: poisson is not supported'):
    config_lib.validate(cfg)
  config_lib.validate(cfg.replace(client_sampling='uniform'))


@pytest.mark.parametrize('args,pattern', [
    (['--dp_noise_multiplier=2'], '--dp_noise_multiplier: 2.0 does nothing here'),
    (['--dp=fixed', '--dp_target_quantile=0.2'], '--dp_target_quantile: 0.2 does nothing'),
])
def test_dp_flags_without_their_mechanism_are_refused(args, pattern):
  from absl import flags
  from fedar_jax import cli
  values = flags.FlagValues()
  cli.define_config_flags(values)
  values(['prog', *args])
  cfg = cli.config_from_flags(values)
  with pytest.raises(ConfigError) as e:
    cli.refuse_idle_flags(cfg, values)
  assert pattern in str(e.value), str(e.value)
  # A swept named defence that sets --dp makes the DP flags apply.
  values = flags.FlagValues()
  cli.define_config_flags(values)
  values(['prog', '--dp_noise_multiplier=2'])
  cli.refuse_idle_flags(cli.config_from_flags(values), values, {'defences': ['none', 'dp']})


def test_report_has_gmean_by_epsilon_and_resampler(tmp_path):
  from fedar_jax import report
  header = sweep_runner.sweep_header(['0', '1'])
  rows = []
  for resampler, sigma, seed, r in itertools.product(('none', 'smote'), (0.0, 1.0), (0, 1),
                                                     (1, 2)):
    cfg = BASE.replace(resampler=resampler, dp_noise_multiplier=sigma, seed=seed)
    gmean = 0.6 + 0.1 * (resampler == 'smote') - 0.05 * sigma + 0.01 * seed + 0.001 * r
    cells = {c: '0.5' for c in loop.csv_header(['0', '1'])}
    cells.update(round=str(r), gmean=f'{gmean:.6f}', epsilon='inf' if sigma == 0 else
                 f'{2.5 * r:.6f}')
    rows.append(sweep_axes.point_settings(cfg) + list(cells.values())
                + sweep_axes.trailing_settings(cfg))
  (tmp_path / 'sweep.csv').write_text('\n'.join(','.join(r) for r in [header] + rows) + '\n')
  outputs = report.write_report(str(tmp_path))
  assert str(tmp_path / 'plots' / 'gmean_vs_epsilon.png') in outputs
  # The figures hold the noise multiplier apart (a trailing setting column): a point per
  # resampler and sigma, each with its own 2 seeds, and a figure with sigma as x.
  from fedar_jax import report_axes, report_columns
  samples = report_axes.final_samples(report_columns.read_rows(str(tmp_path / 'sweep.csv'))[1])
  assert len(samples) == 4 and {len(v) for v in samples.values()} == {2}
  assert str(tmp_path / 'plots' / 'gmean_vs_dp_noise_multiplier.png') in outputs
  md = (tmp_path / 'report.md').read_text()
  assert '## G-mean by epsilon and resampler' in md
  assert '| resampler | σ 0 (ε ∞) | σ 1 (ε 5) |' in md
  assert '| smote | **0.7070 ± 0.0071** | **0.6570 ± 0.0071** |' in md
  summary = _rows(tmp_path / 'summary.csv')
  assert {s['epsilon_mean'] for s in summary} == {'inf', '5.000000'}
  assert {s['epsilon_std'] for s in summary} == {'0.000000'}
