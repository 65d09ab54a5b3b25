"""The report figures' layout: which swept setting is x, lines and panels."""
import itertools

from fedar_jax import report_axes
from fedar_jax.report_axes import SETTINGS, Layout


def _points(**lists):
  """Settings tuples (report_axes.SETTINGS) of the product of `lists`, others ''."""
  names = list(lists)
  out = []
  for values in itertools.product(*lists.values()):
    given = dict(zip(names, values))
    out.append(tuple(given.get(c, '') for c in SETTINGS))
  return out


def test_threshold_resampler_ratio_sweep_draws_each_number_against_the_resamplers():
  points = _points(imbalance_ratio=['2', '10'], resampler=['none', 'smote'],
                   threshold=['1', '3', '10'])
  assert report_axes.layouts(points) == [
      Layout('imbalance_ratio', 'resampler', ('threshold',)),
      Layout('threshold', 'resampler', ('imbalance_ratio',))]
  assert [report_axes.figure_name(l) for l in report_axes.layouts(points)] == [
      'gmean_vs_ir.png', 'gmean_vs_threshold.png']


def test_server_learning_rate_sweep_is_not_drawn_on_the_threshold_axis():
  points = _points(threshold=['1.5'], server_learning_rate=['0.01', '0.1', '1'],
                   loss=['ce', 'focal'])
  [layout] = report_axes.layouts(points)
  assert layout == Layout('server_learning_rate', 'loss', ())
  assert report_axes.figure_name(layout) == 'gmean_vs_server_learning_rate.png'


def test_settings_a_named_defence_fixes_are_left_to_it():
  defences = {'none': ('none', 'mean', '1.5'), 'fedar_3': ('smote', 'mean', '3'),
              'median': ('none', 'median', '1.5')}
  points = []
  for d, (resampler, aggregator, threshold) in defences.items():
    for f in ('0', '0.2'):
      for attack in ('skew', 'label_flip'):
        given = dict(defence=d, resampler=resampler, aggregator=aggregator,
                     threshold=threshold, attacker_fraction=f, attack=attack)
        points.append(tuple(given.get(c, '') for c in SETTINGS))
  assert report_axes.layouts(points) == [Layout('attacker_fraction', 'defence', ('attack',))]


def test_no_swept_number_gives_a_ranked_dot_plot():
  [layout] = report_axes.layouts(_points(loss=['ce', 'focal', 'fedlc']))
  assert layout == Layout(None, 'loss', ())
  assert report_axes.figure_name(layout) == 'gmean_by_loss.png'
  assert report_axes.layouts(_points(loss=['ce'])) == []


def test_baseline_and_coinciding_lines():
  assert report_axes.baseline('resampler', ['smote', 'none']) == 'none'
  assert report_axes.baseline('loss', ['focal', 'ce']) == 'focal'
  assert report_axes.baseline('threshold', ['1', '3']) is None
  curves = {'none': {1: 0.5, 2: 0.6}, 'smote': {1: 0.61234, 2: 0.7},
            'smote_tomek': {1: 0.61231, 2: 0.7}, 'enn': {1: 0.6124, 2: 0.7}}
  assert report_axes.coinciding(curves) == [['none'], ['smote', 'smote_tomek'], ['enn']]
