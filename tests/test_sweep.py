"""Sweeps: a sweep point equals the single run; one program per group; CLI outputs, resume, errors."""
import csv
import os
import random
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fedar_jax import sweep_runner
from fedar_jax import loop
from fedar_jax.config import RunConfig
from tests.test_checkpoint import ROOT, kill_at_random_row

BASE = RunConfig(num_clients=3, samples_per_client=40, feature_dim=8, num_classes=3,
                 test_per_class=30, local_epochs=2, imbalance_ratio=4.0, rounds=3,
                 checkpoint_every=2)
SMALL = ['--num_clients=3', '--samples_per_client=40', '--feature_dim=8', '--num_classes=3',
         '--test_per_class=30', '--local_epochs=2']


def _rows(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def _metrics(row):
  return {k: float(v) for k, v in row.items()
          if k not in sweep_runner.SETTING_COLUMNS + ('resampler', 'round_s')}


def test_sweep_points_equal_single_runs_in_one_program(tmp_path):
  axes = sweep_runner.SweepAxes.of(BASE, thresholds=(1.0, 5.0), seeds=(0, 7),
                                   learning_rates=(1e-3, 2e-2))
  result = sweep_runner.run_sweep(BASE, axes, str(tmp_path / 'sweep'))
  [group] = result['groups']
  assert group['points'] == 8 and group['traces'] == 1  # One program for the numeric axis.
  rows = _rows(tmp_path / 'sweep' / 'sweep.csv')
  assert len(rows) == 8 * BASE.rounds
  # The sweep's data comes from --seed (0) for every seed, so the equivalent single
  # run of point (t, s, lr) is --threshold=t --seed=s --learning_rate=lr --data_seed=0.
  for t, s, lr in [(1.0, 7, 2e-2), (5.0, 0, 1e-3)]:
    single = tmp_path / f'single_{t}_{s}_{lr}'
    loop.train_and_evaluate(BASE.replace(threshold=t, seed=s, learning_rate=lr, data_seed=0),
                             str(single))
    want = [_metrics(r) for r in _rows(single / 'metrics.csv')]
    got = [_metrics(r) for r in rows
           if (r['threshold'], r['seed'], r['learning_rate']) == (f'{t:g}', str(s), f'{lr:g}')]
    assert len(got) == len(want) == BASE.rounds
    for g, w in zip(got, want):
      assert g.keys() == w.keys()
      for k in w:
        assert g[k] == pytest.approx(w[k], abs=1e-5), (t, s, lr, k)
  # The points really differ: the gate fires at threshold 1 only, seeds change the model.
  final = {(r['threshold'], r['seed'], r['learning_rate']): r for r in rows if r['round'] == '3'}
  assert final[('1', '0', '0.001')]['resampled_clients'] == '3'
  assert final[('5', '0', '0.001')]['resampled_clients'] == '0'
  assert final[('1', '0', '0.02')]['train_loss'] != final[('1', '7', '0.02')]['train_loss']

  # The same sweep with its S = 8 points sharded over 8 (forced host) devices.
  _assert_eight_devices_match(EIGHT_DEVICES, 'SWEEP-8-OK', tmp_path / 'sweep8', rows)


def _assert_eight_devices_match(script, marker, workdir, rows):
  """Runs `script` (a sweep on 8 forced host devices writing `workdir`); its sweep.csv
  must equal `rows` in the settings and, to 1e-5, in every metric column but round_s."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run([sys.executable, '-c', script, str(workdir)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0 and marker in proc.stdout, proc.stderr[-3000:]
  rows8 = _rows(workdir / 'sweep.csv')
  assert len(rows8) == len(rows)
  for a, b in zip(rows8, rows):
    assert [a[c] for c in sweep_runner.SETTING_COLUMNS] == [b[c] for c in
                                                           sweep_runner.SETTING_COLUMNS]
    for k, v in _metrics(b).items():
      assert _metrics(a)[k] == pytest.approx(v, abs=1e-5), k


EIGHT_DEVICES = textwrap.dedent('''
    import os, sys
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
    import jax
    from fedar_jax import sweep_runner
    from tests.test_sweep import BASE
    axes = sweep_runner.SweepAxes.of(BASE, thresholds=(1.0, 5.0), seeds=(0, 7),
                                     learning_rates=(1e-3, 2e-2))
    [group] = sweep_runner.run_sweep(BASE, axes, sys.argv[1])['groups']
    assert jax.device_count() == 8 and group['devices'] == {'sweep': 8, 'clients': 1}, group
    assert group['traces'] == 1
    print('SWEEP-8-OK')
''')


def _point_rows(rows, cfg):
  """The sweep.csv rows of the point whose settings are `cfg`'s."""
  want = sweep_runner.point_settings(cfg)
  return [r for r in rows if [r[c] for c in sweep_runner.SETTING_COLUMNS] == want]


def _assert_equals_single_run(rows, cfg, workdir):
  loop.train_and_evaluate(cfg, str(workdir))
  want = [_metrics(r) for r in _rows(workdir / 'metrics.csv')]
  got = [_metrics(r) for r in _point_rows(rows, cfg)]
  assert len(got) == len(want) == cfg.rounds
  for g, w in zip(got, want):
    assert g.keys() == w.keys()
    for k in w:
      assert g[k] == pytest.approx(w[k], abs=1e-5), (cfg, k)


STACKED = dict(imbalance_ratios=(2.0, 4.0), data_seeds=(0, 3), thresholds=(1.0, 5.0))


def test_data_axes_are_stacked_in_one_program_and_equal_single_runs(tmp_path):
  # 2 ratios x 2 data seeds x 2 thresholds: one group, one trace. The ratios give
  # different largest class counts, so the ratio-2 point runs with the ratio-4 bound.
  base = BASE.replace(rounds=2)
  axes = sweep_runner.SweepAxes.of(base, **STACKED)
  result = sweep_runner.run_sweep(base, axes, str(tmp_path / 'sweep'))
  [group] = result['groups']
  assert group['name'] == 'smote' and group['points'] == 8 and group['traces'] == 1
  rows = _rows(tmp_path / 'sweep' / 'sweep.csv')
  assert len(rows) == 8 * base.rounds
  assert [(r['imbalance_ratio'], r['data_seed'], r['threshold']) for r in rows[:8]] == [
      (ir, ds, t) for ir in ('2', '4') for ds in ('0', '3') for t in ('1', '5')]
  for cfg in [base.replace(imbalance_ratio=2.0, data_seed=3, threshold=1.0),
              base.replace(imbalance_ratio=4.0, data_seed=0, threshold=1.0)]:
    _assert_equals_single_run(rows, cfg, tmp_path / f'single_{cfg.imbalance_ratio}')
  # The data really differs per point: ratio and data seed change the client IR / metrics.
  final = {(r['imbalance_ratio'], r['data_seed']): r for r in rows
           if r['round'] == '2' and r['threshold'] == '1'}
  assert final[('2', '0')]['mean_client_ir'] != final[('4', '0')]['mean_client_ir']
  assert final[('2', '0')]['accuracy'] != final[('2', '3')]['accuracy']

  # The same sweep over 8 (forced host) devices: the U = 4 data sets on the SWEEP axis.
  _assert_eight_devices_match(EIGHT_STACKED, 'SWEEP-S8-OK', tmp_path / 'sweep8', rows)


EIGHT_STACKED = textwrap.dedent('''
    import os, sys
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
    import jax
    from fedar_jax import sweep_runner
    from tests.test_sweep import BASE, STACKED
    base = BASE.replace(rounds=2)
    axes = sweep_runner.SweepAxes.of(base, **STACKED)
    [group] = sweep_runner.run_sweep(base, axes, sys.argv[1])['groups']
    assert group['devices'] == {'sweep': 4, 'clients': 2} and group['traces'] == 1, group
    print('SWEEP-S8-OK')
''')


def test_attacker_fractions_stack_real_data_and_equal_single_runs(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 6)).astype(np.float32)
  y = (rng.uniform(size=400) < 0.5).astype(np.int64)
  x[y == 1] += 0.7
  np.savez(tmp_path / 'lat.npz', x=x, y=y)
  base = BASE.replace(dataset='latent_csv', data_path=str(tmp_path / 'lat.npz'), num_clients=4,
                      samples_per_client=30, num_classes=2, feature_dim=6, test_per_class=20,
                      rounds=2, imbalance_ratio=3.0, attack_ratio=10.0)
  axes = sweep_runner.SweepAxes.of(base, attacker_fractions=(0.0, 0.5), thresholds=(1.0,))
  [group] = sweep_runner.run_sweep(base, axes, str(tmp_path / 'sweep'))['groups']
  assert group['points'] == 2 and group['traces'] == 1
  rows = _rows(tmp_path / 'sweep' / 'sweep.csv')
  final = {r['attacker_fraction']: r for r in rows if r['round'] == '2'}
  assert float(final['0.5']['mean_client_ir']) > float(final['0']['mean_client_ir'])
  _assert_equals_single_run(rows, base.replace(attacker_fraction=0.5, data_seed=0, threshold=1.0),
                            tmp_path / 'single')


def _sweep(workdir, *extra):
  return subprocess.run(
      [sys.executable, '-m', 'fedar_jax.sweep', f'--workdir={workdir}', *SMALL, *extra],
      cwd=ROOT, capture_output=True, text=True, timeout=300)


SWEEP = ['--thresholds=1,5', '--seeds=0,1', '--imbalance_ratios=2,4', '--rounds=4',
         '--checkpoint_every=1', '--learning_rate=0.02']


def test_sweep_cli_outputs_then_sigkill_and_resume(tmp_path):
  ref = _sweep(tmp_path / 'ref', *SWEEP)
  assert ref.returncode == 0, ref.stderr
  assert 'eta' in ref.stderr and 'points 8/8' in ref.stderr
  assert 'gmean best ' in ref.stderr and 'resumed at round' not in ref.stdout  # Fresh groups.
  rows = _rows(tmp_path / 'ref' / 'sweep.csv')
  assert len(rows) == 2 * 4 * 4  # groups x points x rounds
  settings = len(sweep_runner.SETTING_COLUMNS)
  # The first sweeps' columns keep their positions; the later setting columns follow them.
  assert list(rows[0])[:7] == ['imbalance_ratio', 'resampler', 'threshold', 'seed',
                               'learning_rate', 'data_seed', 'attacker_fraction']
  assert list(rows[0])[:settings + 1] == list(sweep_runner.SETTING_COLUMNS) + ['round']
  summary = _rows(tmp_path / 'ref' / 'summary.csv')
  assert list(summary[0])[:6] == ['imbalance_ratio', 'resampler', 'threshold', 'learning_rate',
                                  'data_seed', 'attacker_fraction']
  assert list(summary[0])[settings - 1:settings + 1] == ['n_seeds', 'rounds']
  assert [(s['imbalance_ratio'], s['threshold'], s['data_seed'], s['n_seeds'])
          for s in summary] == [('2', '1', '0', '2'), ('2', '5', '0', '2'), ('4', '1', '0', '2'),
                                ('4', '5', '0', '2')]
  for name in ('gmean_vs_threshold', 'gmean_per_round', 'recall_per_class'):
    with open(tmp_path / 'ref' / 'plots' / f'{name}.png', 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  report = (tmp_path / 'ref' / 'report.md').read_text()
  assert '## Final metrics' in report and 'plots/gmean_vs_threshold.png' in report

  # Killed at a random row and resumed: the same rows, none lost or duplicated.
  workdir = tmp_path / 'run'
  cmd = [sys.executable, '-m', 'fedar_jax.sweep', f'--workdir={workdir}', *SMALL, *SWEEP]
  target = kill_at_random_row(cmd, str(workdir / 'sweep.csv'), len(rows),
                              random.Random())
  resumed = _sweep(workdir, *SWEEP)
  assert resumed.returncode == 0, resumed.stderr

  def key(r):
    return tuple(r[c] for c in ('imbalance_ratio', 'threshold', 'seed', 'round'))

  def untimed(r):  # Every column except the timing column round_s.
    return {k: v for k, v in r.items() if k != 'round_s'}

  got = sorted(_rows(workdir / 'sweep.csv'), key=key)
  want = sorted(rows, key=key)
  assert [untimed(r) for r in got] == [untimed(r) for r in want], f'killed at row {target}'
  assert (workdir / 'summary.csv').read_text() == (tmp_path / 'ref' / 'summary.csv').read_text()

  # A changed sweep list is refused with one line naming the flag.
  bad = _sweep(workdir, *SWEEP[1:], '--thresholds=1,3')
  assert bad.returncode == 2 and bad.stderr.strip().startswith('error: --thresholds: ')
  assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize('flag,pattern', [
    ('--thresholds=1,0.5', '--thresholds: must be >= 1'),
    ('--thresholds=1,x', '--thresholds: expected a comma-separated list of float'),
    ('--seeds=1,1', '--seeds: repeats a value'),
    ('--resamplers=smote,bogus', '--resamplers: unknown resampler'),
    ('--learning_rates=0', '--learning_rates: must be > 0'),
    ('--imbalance_ratios=2,0.5', '--imbalance_ratios: must be >= 1'),
    ('--data_seeds=0,-1', '--data_seeds: must be >= 0'),
    ('--attacker_fractions=0,1.5', '--attacker_fractions: must be in [0, 1], got 1.5'),
])
def test_bad_sweep_flags_are_one_line_exit_2(tmp_path, flag, pattern):
  proc = _sweep(tmp_path / 'w', flag)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and pattern in lines[0], proc.stderr
  assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('flags,pattern', [
    # 6 x 5 stacked data sets of 10,000 clients x 220 rows x 432 features: ~115 GiB (one
    # set, ~3.8 GiB, passes the single-run memory check).
    (['--imbalance_ratios=2,4,6,8,10,12', '--data_seeds=0,1,2,3,4', '--num_clients=10000',
      '--samples_per_client=220', '--feature_dim=432'],
     r'^error: --imbalance_ratios/--data_seeds: stacked client data needs [0-9.]+ GiB, '
     r'[0-9.]+ GiB available; use --client_block or shorter lists$'),
    (['--imbalance_ratios=2,4', '--dataset=latent_csv', '--data_path=absent.npz'],
     r'^error: .*absent\.npz'),
])
def test_sweeps_that_cannot_be_built_are_refused_before_writing(tmp_path, flags, pattern):
  proc = _sweep(tmp_path / 'w', *flags)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and re.match(pattern, lines[0]), proc.stderr
  assert not (tmp_path / 'w').exists()


def test_building_a_group_again_compiles_nothing():
  # Every point's build (model init, data) reuses compiled programs: a per-point jit
  # (e.g. of each new module's bound `init`) would compile again for every point.
  import jax
  from fedar_jax import sweep_data
  axes = sweep_runner.SweepAxes.of(BASE, seeds=(1, 2, 3))
  mesh = sweep_runner.mesh_for(axes)
  data = sweep_data.build(BASE, axes, mesh)
  [group] = sweep_runner.make_groups(BASE, axes)
  assert len(sweep_runner.build_points(group, data, mesh)) == 3
  compiles = []

  def listener(name, *_, **__):
    if name == '/jax/core/compile/backend_compile_duration':
      compiles.append(name)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    assert len(sweep_runner.build_points(group, data, mesh)) == 3
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert not compiles, len(compiles)
