"""The method registry: a method is one function plus one registration, its parameter a
traced MethodParams leaf that a sweep stacks; every ranged flag is checked as the
float32/int32 value the round uses."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import config
from fedar_jax import fedar_round
from fedar_jax import server
from fedar_jax import sweep_axes
from fedar_jax import sweep_runner
from fedar_jax import train
from fedar_jax.config import RunConfig
from fedar_jax.methods import MethodParams, params_of, registry
from tests import helpers

SHRINK = registry.Param('toy_shrink', 1.0, 'toy_shrink: step towards the mean, in [0, 1].',
                        low=0.0, high=1.0, high_closed=True)


def toy_shrink(x, use, w, g, p):
  """The global model moved a fraction p.toy_shrink towards the weighted mean."""
  w = jnp.where(use, w, 0.0)
  mean = jnp.sum(w[:, None] * jnp.where(use[:, None], x, 0.0), axis=0) / jnp.sum(w)
  return g + p.toy_shrink * (mean - g)


@pytest.fixture
def toy_aggregator():
  with registry.scoped():
    registry.register(registry.Method('aggregator', 'toy_shrink', toy_shrink, (SHRINK,)))
    yield
  assert 'toy_shrink' not in registry.names('aggregator')


def _stack(trees):
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _sweep_program(spec, aggregator, traces):
  inner = sweep_runner.make_sweep_round(
      spec._replace(methods=spec.methods._replace(aggregator=aggregator)))

  def step(*args):
    traces.append(aggregator)
    return inner(*args)
  return jax.jit(step)


def test_a_registered_aggregator_is_a_flag_value_and_its_parameter_a_swept_leaf(toy_aggregator):
  assert 'toy_shrink' in registry.names('aggregator')
  config.validate(RunConfig(aggregator='toy_shrink'))
  assert MethodParams.create()._fields[-1] == 'toy_shrink'
  clients, test = helpers.unequal_clients()
  spec, state = helpers.small_spec(clients, resampler='none', epochs=1)
  shrinks = (0.0, 0.5, 1.0)
  hparams = _stack([fedar_round.HParams.create(1.5, 0.05, 0, params_of(RunConfig(),
                                                                       toy_shrink=s))
                    for s in shrinks])
  traces = []
  toy, mean = (_sweep_program(spec, name, traces) for name in ('toy_shrink', 'mean'))
  states = _stack([state] * len(shrinks))
  out, _ = toy(states, clients, test, hparams)
  plain, _ = mean(states, clients, test, hparams)
  assert traces == ['toy_shrink', 'mean']  # One program for the three values.
  leaf = lambda s: np.asarray(jax.tree.leaves(s.params)[0])
  start, moved, full = leaf(states), leaf(out), leaf(plain)
  np.testing.assert_array_equal(moved[0], start[0])  # toy_shrink 0: the model stays.
  np.testing.assert_allclose(moved[2], full[2], atol=1e-5)  # 1: the FedAvg mean.
  np.testing.assert_allclose(moved[1], (start[1] + full[1]) / 2, atol=1e-5)
  assert not np.allclose(moved[1], start[1])


def test_a_registered_parameter_is_range_checked_where_it_is_set(toy_aggregator):
  with pytest.raises(ValueError, match='toy_shrink: must be in'):
    params_of(RunConfig(), toy_shrink=1.5)


def test_registering_a_name_twice_or_a_clashing_parameter_is_refused(toy_aggregator):
  with pytest.raises(ValueError, match='registered already'):
    registry.register(registry.Method('aggregator', 'toy_shrink', toy_shrink))
  with pytest.raises(ValueError, match='declared twice'):
    registry.register(registry.Method('aggregator', 'other', toy_shrink,
                                      (SHRINK._replace(default=0.5),)))


def toy_linear(cfg, data, resampler):
  """A toy model: one dense layer on flattened rows."""
  x = np.asarray(data.clients.x)
  d, k = int(np.prod(x.shape[2:])), len(data.class_names)
  params = {'w': jnp.zeros((d, k)), 'b': jnp.zeros(k)}
  apply_fn = lambda p, rows: rows.reshape(rows.shape[0], -1) @ p['w'] + p['b']
  del resampler
  return train.Model(apply_fn, params)


def test_a_registered_model_builds_and_sweeps():
  with registry.scoped():
    registry.register(registry.Method('model', 'toy_linear', toy_linear))
    cfg = config.validate(RunConfig(model='toy_linear', num_clients=3, samples_per_client=30,
                                    feature_dim=5, test_per_class=10, local_epochs=1,
                                    learning_rate=0.05, resampler='none'))
    exp = train.build(cfg)
    rates = (0.01, 0.1)
    hparams = _stack([exp.hparams._replace(learning_rate=jnp.float32(r)) for r in rates])
    traces = []
    step = jax.jit(lambda *a: (traces.append(1), sweep_runner.make_sweep_round(exp.spec)(*a))[1])
    state, _ = step(_stack([exp.state] * len(rates)), exp.data.clients, exp.data.test, hparams)
  assert 'toy_linear' not in registry.names('model') and len(traces) == 1
  w = np.asarray(state.params['w'])
  assert w.shape == (2, 5, 2) and np.all(np.isfinite(w))
  assert np.any(w[0] != 0) and not np.allclose(w[0], w[1])  # Each rate trains its own point.


def test_flags_and_sweep_lists_come_from_the_registry():
  fields = RunConfig.__dataclass_fields__
  for p in registry.params():
    assert fields[p.name].default == p.default and fields[p.name].metadata['help'] == p.help
    trailing = registry.kind_of(p.name) in sweep_axes.TRAILING_KINDS
    assert sweep_axes.SWEEP_FLAGS[p.sweep] == sweep_axes.SweepFlag(
        p.name, int if p.dtype == registry.INT32 else float, sweep_axes.TRACED, p.sweep_help,
        trailing)
  assert MethodParams.create()._fields == tuple(p.name for p in registry.params())
  for kind, field in (('aggregator', 'aggregator'), ('loss', 'loss'), ('privacy', 'dp')):
    for name in registry.names(kind):
      config.validate(RunConfig(**{field: name}))
  for kind in ('server_optimizer', 'aggregator', 'client_optimizer', 'loss', 'model', 'privacy'):
    for name in registry.names(kind):
      if registry.get(kind, name).impl is not None:
        assert callable(registry.resolve(kind, name))


def test_server_optimizers_are_transformations_of_traced_parameters():
  p = MethodParams.create(server_learning_rate=0.5)
  for name in registry.names('server_optimizer'):
    opt = server.server_optimizer(name, p)
    g = {'a': jnp.ones(3)}
    u, _ = jax.jit(opt.update)(g, opt.init(g))
    assert u['a'].shape == (3,) and np.all(np.asarray(u['a']) < 0), name


def _just_inside_rounding_onto(bound: float, inward: float) -> float:
  """The float64 next to `bound` towards `inward` (+1 or -1); it is `bound` in float32."""
  v = float(np.nextafter(bound, inward * np.inf))
  assert np.float32(v) == np.float32(bound) and v != bound
  return v


def _ordinary(b: registry.Bound) -> float:
  if b.high == registry.INF:
    return b.low + 1.0
  return b.low + (b.high - b.low) / 4


@pytest.mark.parametrize('bound', config.bounds(), ids=lambda b: b.name)
def test_every_ranged_flag_is_checked_as_the_round_sees_it(bound):
  cast = int if bound.dtype == registry.INT32 else float
  config.validate(RunConfig(**{bound.name: cast(_ordinary(bound))}))
  bad = []
  if bound.dtype == registry.INT32:
    bad.append(int(bound.low) - 1)
  else:
    if not bound.low_closed:
      bad.append(_just_inside_rounding_onto(bound.low, +1))  # Above low, low in float32.
    else:
      bad.append(_just_inside_rounding_onto(bound.low, -1))  # Below low, low in float32.
    if bound.high != registry.INF:
      bad.append(_just_inside_rounding_onto(bound.high, -1 if not bound.high_closed else +1))
  for value in bad:
    with pytest.raises(config.ConfigError) as e:
      config.validate(RunConfig(**{bound.name: value}))
    assert e.value.flag == bound.name, (value, str(e.value))


def test_the_issue_examples_are_refused():
  for changes, flag in ((dict(aggregator='trimmed_mean', trim_fraction=0.49999999),
                         'trim_fraction'),
                        (dict(loss='class_balanced', cb_beta=0.99999999999), 'cb_beta'),
                        (dict(server_optimizer='fedadam', server_beta1=0.99999999999),
                         'server_beta1')):
    with pytest.raises(config.ConfigError, match='in float32') as e:
      config.validate(RunConfig(**changes))
    assert e.value.flag == flag


def test_cli_value_rounding_onto_an_open_bound_is_one_line_exit_2(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'fedar_jax.main', f'--workdir={tmp_path / "w"}',
                         '--aggregator=trimmed_mean', '--trim_fraction=0.49999999'],
                        capture_output=True, text=True, timeout=300)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr
  assert '--trim_fraction: must be in [0, 0.5), got 0.49999999 (0.5 in float32' in lines[0]
  assert not (tmp_path / 'w').exists()


def test_the_registry_imports_no_jax():
  code = ('import sys; from fedar_jax.methods import registry; '
          'assert registry.names("aggregator") and registry.params(); '
          'assert "jax" not in sys.modules, "jax imported"')
  subprocess.run([sys.executable, '-c', code], check=True, timeout=120)
