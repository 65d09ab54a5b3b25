"""Defences in the sweep: method choices make groups, their numeric parameters share one
program, named defences and attacks are sweep lists; each point equals its single run."""
import subprocess
import sys

from absl import flags
import pytest

from fedar_jax import defences
from fedar_jax import cli
from fedar_jax import methods
from fedar_jax import fedar_round
from fedar_jax import sweep_axes
from fedar_jax import sweep_runner
from fedar_jax import train
from fedar_jax.config import ConfigError, RunConfig
from tests.test_checkpoint import ROOT
from tests.test_sweep import _assert_equals_single_run, _metrics, _point_rows, _rows

BASE = RunConfig(num_clients=6, samples_per_client=40, feature_dim=8, num_classes=2,
                 test_per_class=30, local_epochs=1, imbalance_ratio=4.0, rounds=2,
                 checkpoint_every=2, learning_rate=0.01)
SMALL = ['--num_clients=6', '--samples_per_client=40', '--feature_dim=8', '--num_classes=2',
         '--test_per_class=30', '--local_epochs=1', '--imbalance_ratio=4', '--rounds=2',
         '--learning_rate=0.01']


def test_the_table_is_consistent_with_the_round():
  """Every traced entry is an HParams or MethodParams field, and each reaches the built
  HParams (two values give two different leaves); code and data entries are RunConfig
  fields. New entries come after the first sweeps' columns."""
  assert sweep_axes.SETTING_COLUMNS[:7] == (
      'imbalance_ratio', 'resampler', 'threshold', 'seed', 'learning_rate', 'data_seed',
      'attacker_fraction')
  traced = [f.field for f in sweep_axes.SWEEP_FLAGS.values() if f.kind == sweep_axes.TRACED]
  assert set(methods.MethodParams.create()._fields) <= set(traced)
  base = train.build(BASE)
  for field in traced:
    assert field in fedar_round.HParams._fields or field in methods.MethodParams.create()._fields, field
    value = getattr(BASE, field)
    other = train.build(BASE.replace(**{field: value + 1 if field != 'server_beta1'
                                        else value / 2}))
    params = lambda h: {**h._asdict(), **h.methods._asdict()}
    assert params(other.hparams)[field] != params(base.hparams)[field], field
  for f in sweep_axes.SWEEP_FLAGS.values():
    assert f.field in RunConfig.__dataclass_fields__


def test_two_aggregators_make_two_groups_each_equal_to_single_runs(tmp_path):
  axes = sweep_runner.SweepAxes.of(BASE, aggregators=('mean', 'median'), seeds=(0, 1))
  result = sweep_runner.run_sweep(BASE, axes, str(tmp_path / 'sweep'))
  assert [(g['name'], g['points'], g['traces']) for g in result['groups']] == [
      ('smote', 2, 1), ('smote_median', 2, 1)]
  rows = _rows(tmp_path / 'sweep' / 'sweep.csv')
  assert {r['aggregator'] for r in rows} == {'mean', 'median'}
  _assert_equals_single_run(rows, BASE.replace(aggregator='median', seed=1, data_seed=0),
                            tmp_path / 'single')
  # The aggregators really differ.
  final = {(r['aggregator'], r['seed']): r for r in rows if r['round'] == '2'}
  assert _metrics(final[('mean', '1')]) != _metrics(final[('median', '1')])


NUMERIC = dict(prox_mus=(0.0, 0.5), server_learning_rates=(1.0, 0.5), focal_gammas=(0.0, 3.0))


def test_numeric_method_parameters_share_one_program(tmp_path):
  base = BASE.replace(loss='focal', server_optimizer='fedavgm')
  axes = sweep_runner.SweepAxes.of(base, **NUMERIC)
  [group] = sweep_runner.run_sweep(base, axes, str(tmp_path / 'sweep'))['groups']
  assert group['points'] == 8 and group['traces'] == 1  # One program for all 8 points.
  rows = _rows(tmp_path / 'sweep' / 'sweep.csv')
  assert [(r['prox_mu'], r['server_learning_rate'], r['focal_gamma']) for r in rows[:8]] == [
      (m, s, g) for s in ('1', '0.5') for m in ('0', '0.5') for g in ('0', '3')]
  cfg = base.replace(prox_mu=0.5, server_learning_rate=0.5, focal_gamma=3.0, data_seed=0)
  _assert_equals_single_run(rows, cfg, tmp_path / 'single')
  finals = {tuple(r[c] for c in ('prox_mu', 'server_learning_rate', 'focal_gamma')):
            r['train_loss'] for r in rows if r['round'] == '2'}
  assert len(set(finals.values())) == 8  # Every parameter changes the run.


def test_named_defences_and_attacks_equal_main_with_the_same_flags(tmp_path):
  """--defences=none,fedar_median x --attacks=skew,label_flip x 2 attacker fractions: two
  groups (one program each for the 4 stacked data sets), and a point equals
  `python -m fedar_jax.main --defence=fedar_median --attack=label_flip ...`."""
  axes = sweep_runner.SweepAxes.of(BASE, defences=('none', 'fedar_median'),
                                   attacks=('skew', 'label_flip'),
                                   attacker_fractions=(0.0, 0.5))
  result = sweep_runner.run_sweep(BASE, axes, str(tmp_path / 'sweep'))
  assert [(g['name'], g['points'], g['traces']) for g in result['groups']] == [
      ('none', 4, 1), ('fedar_median', 4, 1)]
  rows = _rows(tmp_path / 'sweep' / 'sweep.csv')
  got = {(r['defence'], r['resampler'], r['aggregator'], r['threshold']) for r in rows}
  assert got == {('none', 'none', 'mean', '1.5'), ('fedar_median', 'smote', 'median', '1.5')}
  final = {(r['defence'], r['attack'], r['attacker_fraction']): r for r in rows
           if r['round'] == '2'}
  assert _metrics(final[('none', 'skew', '0.5')]) != _metrics(final[('none', 'label_flip',
                                                                     '0.5')])
  single = tmp_path / 'single'
  proc = subprocess.run([sys.executable, '-m', 'fedar_jax.main', f'--workdir={single}',
                         *SMALL, '--defence=fedar_median', '--attack=label_flip',
                         '--attacker_fraction=0.5', '--data_seed=0'],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  cfg = defences.apply(BASE.replace(defence='fedar_median', attack='label_flip',
                                    attacker_fraction=0.5, data_seed=0))
  want = [_metrics(r) for r in _rows(single / 'metrics.csv')]
  got = [_metrics(r) for r in _point_rows(rows, cfg)]
  assert len(got) == len(want) == 2
  for g, w in zip(got, want):
    for k in w:
      assert g[k] == pytest.approx(w[k], abs=1e-5), k


def _lists(args: str, base_args: str = ''):
  """sweep.sweep_lists on freshly parsed run and sweep flags."""
  from fedar_jax import sweep
  values = flags.FlagValues()
  cli.define_config_flags(values)
  for name in sweep.SWEEP_FLAGS:
    flags.DEFINE_list(name, [], '', flag_values=values)
  values(['prog', *SMALL, *base_args.split(), *args.split()])
  return sweep.sweep_lists(values, cli.config_from_flags(values))


@pytest.mark.parametrize('args,base_args,pattern', [
    ('--trim_fractions=0.1,0.5', '', '--trim_fractions: must be in [0, 0.5), got 0.5'),
    ('--prox_mus=0,-0.1', '', '--prox_mus: must be >= 0, got -0.1'),
    ('--focal_gammas=2,-1', '', '--focal_gammas: must be >= 0, got -1'),
    ('--server_learning_rates=1,0', '', '--server_learning_rates: must be > 0, got 0'),
    ('--aggregators=mean,bogus', '', "--aggregators: unknown value 'bogus'"),
    ('--losses=ce,focal,ce', '', '--losses: repeats a value'),
    ('--byzantine_client_counts=0,2', '--aggregator=krum',
     '--byzantine_client_counts: 2 is too many for 6 clients per round'),
    ('--aggregators=mean,krum', '--byzantine_clients=2',
     '--byzantine_clients: 2 is too many for 6 clients per round (Krum needs 2f + 2 < 6) '
     '(with --aggregators=krum)'),
    ('--defences=none,bogus', '', "--defences: unknown value 'bogus'"),
    ('--defences=none,median --aggregators=mean,krum', '',
     '--aggregators: aggregator is set by the defence none'),
    ('--defences=none,median', '--aggregator=krum',
     '--defences: none sets --aggregator=mean; drop --aggregator=krum'),
    ('--attacks=skew,scale', '', '--attacks: scale changes the round'),
    ('--attacks=skew,bogus', '', "--attacks: unknown value 'bogus'"),
])
def test_bad_defence_lists_are_one_line_naming_the_flag(args, base_args, pattern):
  with pytest.raises(ConfigError) as e:
    _lists(args, base_args)
  assert pattern in str(e.value) and '\n' not in str(e.value), str(e.value)


def test_good_lists_pass_and_a_defence_flag_sets_its_flags():
  lists = _lists('--defences=none,krum,fedar_1.5 --trim_fractions=0.1,0.2',
                 '--byzantine_clients=1')
  assert lists['defences'] == ('none', 'krum', 'fedar_1.5')
  values = flags.FlagValues()
  cli.define_config_flags(values)
  values(['prog', '--defence=fedar_median'])
  cfg = cli.config_from_flags(values)
  assert (cfg.resampler, cfg.threshold, cfg.aggregator, cfg.loss) == ('smote', 1.5, 'median',
                                                                      'ce')
  values(['prog', '--defence=fedar_median', '--aggregator=krum'])
  with pytest.raises(ConfigError, match='^--defence: fedar_median sets --aggregator=median; '
                     'drop --aggregator=krum$'):
    cli.config_from_flags(values)


def test_bad_list_from_the_cli_exits_2_and_writes_nothing(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'fedar_jax.sweep', f'--workdir={tmp_path / "w"}',
                         *SMALL, '--aggregators=mean,trimmed_mean', '--trim_fractions=0,0.6'],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert lines == ['error: --trim_fractions: must be in [0, 0.5), got 0.6'], proc.stderr
  assert not (tmp_path / 'w').exists()
