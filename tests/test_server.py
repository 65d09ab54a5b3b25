"""The server step: server optimizers vs NumPy (Reddi et al. 2021), FedAvg unchanged,
empty rounds, the round vs the reference loop per method, one compile, exact resume."""
import csv

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import pytest

from fedar_jax import aggregate
from fedar_jax import methods
from fedar_jax import reference
from fedar_jax import fedar_round
from fedar_jax import server
from fedar_jax.data import federated
from fedar_jax import loop
from fedar_jax.config import RunConfig
from tests import helpers

P = methods.MethodParams.create(server_learning_rate=0.3, server_momentum=0.8,
                                server_beta1=0.7, server_beta2=0.95, server_tau=0.05)


def _clients(rng, shape=(5, 3, 4)):
  x = {'w': rng.normal(size=shape).astype(np.float32),
       'b': rng.normal(size=(shape[0], shape[2])).astype(np.float32)}
  w = np.array([10, 0, 3, 7, 1], np.float32)
  return x, w


def _updates(x, w):
  return server.ClientUpdates(aggregate.weighted_sum(x, jnp.asarray(w)), jnp.float32(w.sum()),
                              x, jnp.asarray(w))


@pytest.mark.parametrize('name', methods.SERVER_OPTIMIZERS)
def test_server_optimizer_matches_numpy_published_update_over_three_rounds(name):
  rng = np.random.default_rng(0)
  params = {'w': rng.normal(size=(3, 4)).astype(np.float32),
            'b': rng.normal(size=4).astype(np.float32)}
  step = server.make_server(methods.Methods(server_optimizer=name))
  update = jax.jit(step.update)
  state = step.init(params, P)
  g = np.asarray(ravel_pytree(params)[0], np.float64)
  np_state = reference.np_server_init(name, g, P)
  for _ in range(3):
    x, w = _clients(rng)
    target = np.tensordot(w / w.sum(), np.stack(
        [np.asarray(ravel_pytree(jax.tree.map(lambda a: a[c], x))[0]) for c in range(5)]), 1)
    params, state = update(_updates(x, w), state, params, P)
    g, np_state = reference.np_server_update(name, g, target, np_state, P)
    np.testing.assert_allclose(ravel_pytree(params)[0], g, atol=1e-5, rtol=1e-5)
  assert (state is None) == (name == 'fedavg')


def test_fedavg_with_learning_rate_one_is_the_previous_round_fedavg_bit_for_bit():
  rng = np.random.default_rng(1)
  params = {'w': rng.normal(size=(3, 4)).astype(np.float32),
            'b': rng.normal(size=4).astype(np.float32)}
  x, w = _clients(rng)
  u = _updates(x, w)
  new, state = server.make_server(methods.Methods()).update(u, None, params,
                                                            methods.MethodParams.create())
  # The round's FedAvg before the server step existed.
  old = jax.tree.map(lambda s, o: jnp.where(u.weight > 0, s / jnp.maximum(u.weight, 1e-30),
                                            o).astype(o.dtype), u.param_sum, params)
  jax.tree.map(np.testing.assert_array_equal, new, old)
  assert state is None


@pytest.mark.parametrize('aggregator', ['mean', 'median'])
def test_no_counted_client_keeps_model_and_optimizer_state(aggregator):
  rng = np.random.default_rng(2)
  params = {'w': rng.normal(size=(3, 4)).astype(np.float32)}
  step = server.make_server(methods.Methods('fedadam', aggregator))
  x = {'w': rng.normal(size=(5, 3, 4)).astype(np.float32)}
  state = step.init(params, P)
  params1, state1 = step.update(_updates(x, np.ones(5, np.float32)), state, params, P)
  x['w'][:] = np.nan
  params2, state2 = step.update(_updates(x, np.zeros(5, np.float32)), state1, params1, P)
  jax.tree.map(np.testing.assert_array_equal, (params2, state2), (params1, state1))
  assert not np.array_equal(params1['w'], params['w'])


# One representative combination per new choice (every choice appears at least once).
COMBOS = [
    ('fedadam', 'median', 'focal', 'sgd', {'prox_mu': 0.1}),
    ('fedyogi', 'trimmed_mean', 'class_balanced', 'momentum', {'trim_fraction': 0.25}),
    ('fedadagrad', 'krum', 'balanced_softmax', 'adam', {'byzantine_clients': 1}),
    ('fedavgm', 'multi_krum', 'logit_adjusted', 'adam', {'byzantine_clients': 1}),
    ('fedavg', 'geometric_median', 'fedrs', 'adam', {'server_learning_rate': 0.5}),
    ('fedadam', 'norm_clip', 'fedlc', 'sgd', {'clip_norm': 0.05}),
]


@pytest.mark.parametrize('opt,agg,loss,client_opt,values', COMBOS)
def test_round_equals_reference_loop_per_method(opt, agg, loss, client_opt, values):
  clients, test = helpers.unequal_clients(sizes=(30, 12, 22, 16, 25, 9))
  spec, state = helpers.small_spec(clients, resampler='none', epochs=1)
  spec = spec._replace(methods=methods.Methods(opt, agg, loss, client_opt))
  p = P._replace(**{k: v for k, v in methods.MethodParams.create(**values)._asdict().items()
                    if k in values})
  hp = fedar_round.HParams.create(1.5, 0.05, 3, p)
  state = state._replace(opt_state=server.make_server(spec.methods).init(state.params, p))
  fast = jax.jit(fedar_round.make_round(spec))
  slow = reference.make_reference_round(spec)
  s_fast, s_slow = state, state
  for _ in range(2):
    s_fast, _ = fast(s_fast, clients, test, hp)
    s_slow, _ = slow(s_slow, clients, test, hp)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0),
                 s_fast.params, s_slow.params)
  assert not np.allclose(jax.tree.leaves(s_fast.params)[0], jax.tree.leaves(state.params)[0])


def test_round_compiles_once_across_method_parameter_values():
  clients, test = helpers.unequal_clients()
  spec, state = helpers.small_spec(clients, resampler='none', epochs=1)
  spec = spec._replace(methods=methods.Methods('fedadam', 'trimmed_mean', 'focal', 'adam'))
  state = state._replace(opt_state=server.make_server(spec.methods).init(state.params, P))
  traces, inner = [], fedar_round.make_round(spec)
  step = jax.jit(lambda *a: (traces.append(1), inner(*a))[1])
  for values in [dict(), dict(server_learning_rate=0.1, trim_fraction=0.3, focal_gamma=0.0,
                              prox_mu=0.5, server_beta1=0.5, server_tau=0.1)]:
    hp = fedar_round.HParams.create(1.5, 1e-2, 0, methods.MethodParams.create(**values))
    state, _ = step(state, clients, test, hp)
  jax.block_until_ready(state)
  assert len(traces) == 1 and step._cache_size() == 1


RUN = dict(num_clients=4, samples_per_client=30, feature_dim=6, test_per_class=20, num_classes=3,
           imbalance_ratio=3.0, local_epochs=1, learning_rate=0.02, checkpoint_every=1,
           server_optimizer='fedadam', server_learning_rate=0.05, aggregator='median')


def _rows(path):
  with open(path) as f:
    return [{k: v for k, v in row.items() if k != 'round_s'} for row in csv.DictReader(f)]


def test_resume_with_server_optimizer_state_equals_uninterrupted_run(tmp_path):
  full = RunConfig(rounds=4, **RUN)
  loop.train_and_evaluate(full, str(tmp_path / 'full'))
  loop.train_and_evaluate(full.replace(rounds=2), str(tmp_path / 'cut'))
  loop.train_and_evaluate(full, str(tmp_path / 'cut'))
  a, b = _rows(tmp_path / 'full' / 'metrics.csv'), _rows(tmp_path / 'cut' / 'metrics.csv')
  assert len(a) == 4 and a == b
  assert len({r['gmean'] + r['train_loss'] for r in a}) > 1


def test_blocked_round_with_robust_aggregator_equals_unblocked():
  sizes = (40, 25, 33, 12, 30, 18, 27)
  clients, test = helpers.unequal_clients(sizes=sizes)
  spec, state = helpers.small_spec(clients, resampler='none', epochs=1)
  spec = spec._replace(methods=methods.Methods(aggregator='median'))
  blocked_spec = spec._replace(num_clients=len(sizes), client_block=3)
  padded = federated.append_empty_clients(clients, fedar_round.data_rows(blocked_spec, len(sizes)),
                                len(sizes))
  assert padded.x.shape[0] == 9  # Two padding slots, which the median must not count.
  hp = fedar_round.HParams.create(1.5, 0.01, 3)
  a, _ = jax.jit(fedar_round.make_round(blocked_spec))(state, padded, test, hp)
  b, _ = jax.jit(fedar_round.make_round(spec))(state, clients, test, hp)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-6, rtol=0), a.params,
               b.params)
