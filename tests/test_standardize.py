"""--standardize: client and federated z-scores against NumPy, and the CLI record."""
import json

import numpy as np
import pytest

from fedar_jax import train
from fedar_jax.config import ConfigError, RunConfig, validate
from fedar_jax.data import federated
from fedar_jax.data import standardize
from fedar_jax.data.load import FederatedDataset


def _data(seed=0):
  rng = np.random.default_rng(seed)
  xs = [rng.uniform(0, 409, size=(n, 5)).astype(np.float32) + 94 for n in (12, 7, 20)]
  xs[1][:, 3] = 5.0  # a constant feature in one client
  ys = [rng.integers(0, 2, len(x)).astype(np.int32) for x in xs]
  clients = federated.stack_clients(xs, ys, capacity=24)
  xt = rng.uniform(0, 409, size=(10, 5)).astype(np.float32)
  test = federated.TestData(xt, np.zeros(10, np.int32), np.arange(10) < 8)
  return FederatedDataset(clients, test, ('a', 'b')), xs, xt[:8]


def test_client_mode_is_each_clients_own_zscore():
  data, xs, xt = _data()
  out = standardize.standardize(data, 'client')
  for c, x in enumerate(xs):
    sd = x.astype(np.float64).std(0)
    want = (x - x.astype(np.float64).mean(0)) / np.where(sd > 0, sd, 1)
    np.testing.assert_allclose(out.clients.x[c, :len(x)], want, rtol=1e-5, atol=1e-5)
    assert np.all(out.clients.x[c, len(x):] == 0)
  np.testing.assert_allclose(out.test.x[:8], (xt - xt.mean(0)) / xt.std(0), rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(out.clients.y, data.clients.y)


def test_federated_mode_uses_the_pooled_mean_and_std_for_clients_and_test():
  data, xs, xt = _data()
  out = standardize.standardize(data, 'federated')
  pooled = np.concatenate(xs).astype(np.float64)
  mean, sd = pooled.mean(0), pooled.std(0)
  for c, x in enumerate(xs):
    np.testing.assert_allclose(out.clients.x[c, :len(x)], (x - mean) / sd, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.test.x[:8], (xt - mean) / sd, rtol=1e-5, atol=1e-5)
  assert np.all(out.test.x[8:] == 0)
  assert standardize.standardize(data, 'none') is data


def test_flag_is_validated_and_reaches_the_experiment():
  with pytest.raises(ConfigError, match='--standardize'):
    validate(RunConfig(standardize='zscore'))
  cfg = RunConfig(num_clients=2, samples_per_client=22, feature_dim=3, test_per_class=4,
                  standardize='federated')
  exp = train.build(cfg)
  c = exp.data.clients
  real = c.x[c.mask].astype(np.float64)
  np.testing.assert_allclose(real.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(real.std(0), 1, atol=1e-4)
  assert json.loads(json.dumps(cfg.to_dict()))['standardize'] == 'federated'
