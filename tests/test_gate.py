import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax.resample import gate


def test_class_counts_ignore_padding():
  y = jnp.array([0, 1, 1, 2, 2, 2, 0])
  mask = jnp.array([1, 1, 1, 1, 1, 0, 0], bool)
  np.testing.assert_array_equal(gate.class_counts(y, mask, 4), [1, 2, 2, 0])


@pytest.mark.parametrize('counts,want', [([10, 1], 10.0), ([3, 6, 0, 2], 3.0), ([5, 0], 1.0),
                                         ([0, 0], 1.0), ([4, 4], 1.0)])
def test_imbalance_ratio(counts, want):
  assert float(gate.imbalance_ratio(jnp.array(counts))) == pytest.approx(want)


def test_gate_is_strictly_greater_and_traced_threshold_never_recompiles():
  traces = []

  @jax.jit
  def fire(ir, threshold):
    traces.append(1)
    return gate.fedar_gate(ir, threshold)

  assert bool(fire(jnp.float32(2.0), jnp.float32(1.5)))
  assert not bool(fire(jnp.float32(2.0), jnp.float32(2.0)))
  assert not bool(fire(jnp.float32(2.0), jnp.float32(10.0)))
  assert len(traces) == 1


def test_select_pads_original_and_picks_by_gate():
  orig = (jnp.ones((3, 2)), jnp.array([0, 1, 1]), jnp.array([1, 1, 0], bool))
  res = (jnp.full((5, 2), 7.0), jnp.zeros(5, jnp.int32), jnp.ones(5, bool))
  x, y, m = gate.select(jnp.bool_(False), res, orig)
  assert x.shape == (5, 2)
  np.testing.assert_array_equal(m, [1, 1, 0, 0, 0])
  x, y, m = gate.select(jnp.bool_(True), res, orig)
  np.testing.assert_array_equal(x, res[0])
