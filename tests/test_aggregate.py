import jax
import numpy as np

from fedar_jax import aggregate


def test_fedavg_matches_numpy_weighted_mean():
  rng = np.random.default_rng(0)
  params = {'w': rng.normal(size=(5, 3, 4)).astype(np.float32),
            'b': rng.normal(size=(5, 4)).astype(np.float32)}
  n = np.array([10, 0, 3, 7, 1])
  out = aggregate.fedavg(params, n)
  for k in params:
    want = np.tensordot(n / n.sum(), params[k].astype(np.float64), axes=1)
    np.testing.assert_allclose(out[k], want, rtol=1e-5, atol=1e-6)


def test_fedavg_all_zero_weights_gives_plain_mean():
  params = {'w': np.arange(6, dtype=np.float32).reshape(3, 2)}
  out = aggregate.fedavg(params, np.zeros(3))
  np.testing.assert_allclose(out['w'], [2.0, 3.0])
