"""Progress lines: counts, the measured-rate ETA, and the run's and a group's round labels."""
import io

import pytest

from fedar_jax import loop
from fedar_jax import progress
from fedar_jax import sweep_runner


class Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_the_eta_is_the_measured_rate_times_the_rounds_left():
  out, clock = io.StringIO(), Clock()
  bar = progress.Progress(total_rounds=10, total_points=6, stream=out, clock=clock)
  bar.skip(2)  # Done by an earlier invocation: not in the rate.
  assert bar.eta() is None and bar.text('group a').endswith('eta ?')
  clock.now += 30  # A compile before the first round: not in the rate.
  for seconds in (1.0, 3.0, 2.0):
    clock.now += seconds + 0.5  # The rounds and what happens between them.
    bar.round_done(seconds, 'group a')
  # 7 s since the first round began (1 s before the first ended), over 3 rounds; 5 left.
  assert bar.eta() == pytest.approx(7.0 / 3 * 5)
  last = out.getvalue().strip().splitlines()[-1]
  assert 'rounds 5/10' in last and 'points 0/6' in last and 'eta 0:00:12' in last


def test_points_are_counted_as_their_group_finishes():
  out = io.StringIO()
  bar = progress.Progress(total_rounds=4, total_points=6, stream=out, clock=Clock())
  bar.skip(2, 3)  # A finished group of 3 points.
  bar.round_done(1.0, 'group 2/2 b round 1/2')
  bar.round_done(1.0, 'group 2/2 b round 2/2', points_done=3)
  lines = out.getvalue().strip().splitlines()
  assert 'points 3/6  rounds 3/4' in lines[0] and 'points 6/6  rounds 4/4' in lines[1]


def test_a_groups_label_has_its_best_and_mean_gmean():
  cells = [{'gmean': '0.900000'}, {'gmean': '0.800000'}, {'gmean': 'nan'}]
  assert sweep_runner.gmean_label(cells) == 'gmean best 0.900 mean 0.850'
  assert sweep_runner.gmean_label(cells[:1]) == 'gmean 0.900'
  assert sweep_runner.gmean_label(cells[2:]) == 'gmean nan'


def test_the_run_line_shows_fallbacks_and_drops():
  cell = {'gmean': '0.8', 'accuracy': '0.81', 'f1': '0.79', 'resampled_clients': '2',
          'dropped_clients': '0', 'fallback_clients': '0', 'round_s': '0.0123'}
  assert loop.round_label(cell, 2) == 'gmean 0.800 acc 0.810 f1 0.790 resampled 2/2  0.012s'
  cell.update(fallback_clients='2', dropped_clients='1')
  assert loop.round_label(cell, 2) == ('gmean 0.800 acc 0.810 f1 0.790 resampled 2/2 '
                                       'fallback 2 dropped 1  0.012s')
