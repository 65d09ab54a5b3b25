"""Stacked sweep data: the padding rules it relies on, the memory estimate and refusal."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import client
from fedar_jax import models
from fedar_jax import resample
from fedar_jax import sweep_axes
from fedar_jax import sweep_data
from fedar_jax.config import ConfigError, RunConfig
from fedar_jax.data import synthetic
from fedar_jax.resample import gate


def _one_client(n=30, k=3, d=6):
  clients, _ = synthetic.synthetic_federated(0, 1, n, k, d, 4.0, 5)
  return tuple(jnp.asarray(a[0]) for a in (clients.x, clients.y, clients.mask))


def test_oversampler_draws_do_not_depend_on_the_class_count_bound():
  # A sweep sizes every point's synthetic slots from the largest class count of any
  # point; the single run from its own. The rows must be the same (extra slots empty).
  x, y, mask = _one_client()
  b = int(np.bincount(np.asarray(y)).max())
  checked = []
  for name in resample.RESAMPLER_NAMES:
    small, large = (resample.make_resampler(name, num_classes=3, capacity=30, max_class_count=m)
                    for m in (b, b + 9))
    if small.capacity == large.capacity:
      continue  # Under-samplers: the bound does not enter.
    a, z = jax.jit(lambda key: (small.resample(key, x, y, mask), large.resample(key, x, y, mask)))(
        jax.random.key(3))
    m = small.capacity
    for got, want in zip(z[:3], a[:3]):
      np.testing.assert_array_equal(got[:m], want, err_msg=name)
    assert not np.any(z[2][m:]) and bool(z[3]) == bool(a[3]), name
    assert int(np.sum(a[2])) > 30 or name == 'smote_enn', name  # Something was synthesised.
    checked.append(name)
  assert len(checked) == 9


def test_local_training_ignores_trailing_padding_rows():
  x, y, mask = _one_client()
  model = models.MLP(num_classes=3, hidden=(4,))
  params = model.init(jax.random.key(0), x[:1])

  def train(rows):
    return client.local_train(model.apply, params, jax.random.key(5),
                              *gate.pad_rows(x, y, mask, rows), learning_rate=0.05, epochs=2,
                              batch_size=8)
  (p30, l30), (p53, l53) = train(30), train(53)
  for a, b in zip(jax.tree.leaves(p30), jax.tree.leaves(p53)):
    np.testing.assert_array_equal(a, b)
  assert float(l30) == float(l53)


BASE = RunConfig(num_clients=5, samples_per_client=40, feature_dim=8, num_classes=2,
                 imbalance_ratio=4.0)


def test_memory_estimate_counts_stacked_copies_and_resampled_clients():
  axes = sweep_axes.SweepAxes.of(BASE, imbalance_ratios=(2.0, 4.0), data_seeds=(0, 1, 2),
                                 thresholds=(1.0, 2.0), resamplers=('none', 'smote'))
  per_row = 8 * 4 + 5
  got = sweep_data.estimate_bytes(axes, rows=5, capacity=40, feature_shape=(8,),
                                  num_classes=2, max_class_count=32, block=5)
  smote_rows = 40 + 32  # N + (K - 1) * B
  # U = 6 stacked sets + S = 12 per-point copies, then 12 points x 5 clients resampled.
  assert got == (6 + 12) * 5 * 40 * per_row + 12 * 5 * smote_rows * per_row
  shared = sweep_axes.SweepAxes.of(BASE, thresholds=(1.0, 2.0))
  assert sweep_data.estimate_bytes(shared, 5, 40, (8,), 2, 32, 5) == (
      5 * 40 * per_row + 2 * 5 * smote_rows * per_row)


def test_memory_refusal_names_the_lists_that_multiply_memory():
  axes = sweep_axes.SweepAxes.of(BASE, imbalance_ratios=(2.0, 4.0), data_seeds=(0, 1),
                                 thresholds=(1.0, 2.0))
  with pytest.raises(ConfigError) as e:
    sweep_data.check_memory(axes, need=int(41.2 * 2 ** 30), available=int(22.8 * 2 ** 30))
  assert str(e.value) == ('--imbalance_ratios/--data_seeds: stacked client data needs 41.2 GiB, '
                          '22.8 GiB available; use --client_block or shorter lists')
  sweep_data.check_memory(axes, need=10, available=11)
  single = sweep_axes.SweepAxes.of(BASE)
  sweep_data.check_memory(single, need=10 ** 15, available=1)  # One point: as `main`.
