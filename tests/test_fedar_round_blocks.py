"""Blocks of rounds per compiled call: equal to one round per call, one program, no compile on a finished resume."""
import csv

import jax
import jax.numpy as jnp
import numpy as np

from fedar_jax import fedar_round
from fedar_jax import loop
from fedar_jax.config import RunConfig
from tests import helpers


def test_block_of_rounds_equals_one_round_per_call_in_one_program():
  clients, test = helpers.unequal_clients()
  spec, state = helpers.small_spec(clients)
  hp = fedar_round.HParams.create(threshold=1.5, learning_rate=0.01, seed=3)
  one = jax.jit(fedar_round.make_round(spec))
  traces, inner = [], fedar_round.make_round(spec)
  block = jax.jit(fedar_round.make_rounds(spec, 3, lambda *a: (traces.append(1), inner(*a))[1]))
  s_one, want = state, []
  for _ in range(5):
    s_one, out = one(s_one, clients, test, hp)
    want.append(out)
  s_block, got = state, []
  for count in (3, 2):  # Blocks of 3 and 2: one program.
    s_block, outs = block(s_block, clients, test, hp, jnp.int32(count))
    outs = jax.device_get(outs)
    got += [jax.tree.map(lambda a, i=i: a[i], outs) for i in range(count)]
    # Rounds past `count` are no-ops with zero outputs.
    assert not np.any(np.asarray(outs.metrics['confusion'][count:]))
  assert len(traces) == 1 and block._cache_size() == 1
  jax.tree.map(np.testing.assert_array_equal, s_one, s_block)
  for w, g in zip(want, got):
    jax.tree.map(np.testing.assert_array_equal, w, g)
  assert int(s_block.round) == 5


def test_resuming_a_finished_run_compiles_nothing(tmp_path, monkeypatch):
  cfg = RunConfig(num_clients=2, samples_per_client=30, feature_dim=4, test_per_class=10,
                  rounds=3, checkpoint_every=2, local_epochs=1)
  first = loop.train_and_evaluate(cfg, str(tmp_path))
  traces, make_round = [], fedar_round.make_round

  def counted(spec):
    inner = make_round(spec)
    return lambda *a: (traces.append(1), inner(*a))[1]

  monkeypatch.setattr(fedar_round, 'make_round', counted)
  again = loop.train_and_evaluate(cfg, str(tmp_path))
  assert traces == [] and again['compile_s'] == 0 and again['final'] == first['final']
  with open(tmp_path / 'metrics.csv') as f:
    assert [r['round'] for r in csv.DictReader(f)] == ['1', '2', '3']


def test_call_plan_grows_calls_to_the_time_budget_and_stops_at_checkpoints():
  plan = loop.CallPlan(0, 12, 5, 5, seconds=1.0)
  calls = []
  for first, count in plan:
    calls.append((first, count))
    plan.record(count, 0.3 * count)  # 0.3 s per round: 3 rounds fit in a call.
  assert calls == [(1, 1), (2, 3), (5, 1), (6, 3), (9, 2), (11, 2)]
  assert [plan.checkpoint_due(f + c - 1) for f, c in calls] == [
      False, False, True, False, True, True]
  assert not loop.CallPlan(12, 12, 5, 5)
