import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import models


def close(a, b, tol=1e-5):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=tol, rtol=tol), a, b)


@pytest.mark.parametrize('shape', [(3, 10, 10, 1), (2, 9, 7, 3)])
def test_patch_conv_equals_lax_convolution(shape):
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape).astype(np.float32))
  conv, patch = nn.Conv(4, (3, 3)), models.PatchConv(4)
  params = conv.init(jax.random.key(1), x)
  params['params']['bias'] = jnp.arange(4.0)
  # Same parameter shapes and initializers, same outputs.
  close(jax.tree.map(jnp.shape, patch.init(jax.random.key(1), x)),
        jax.tree.map(jnp.shape, params))
  close(patch.init(jax.random.key(1), x)['params']['kernel'], params['params']['kernel'], 0)
  close(*jax.jit(lambda p: (patch.apply(p, x), conv.apply(p, x)))(params))
  np.testing.assert_allclose(models.avg_pool_2x2(x), nn.avg_pool(x, (2, 2), strides=(2, 2)),
                             atol=1e-6)


def test_patch_encoder_equals_lax_encoder_vmapped_over_client_parameters():
  # The CNN's client update vmaps the encoder over per-client parameters: the
  # matmul form must give the lax convolutions' outputs and gradients.
  fast, slow = models.cnn(2, (), 5, (3,)), models.cnn(2, (), 5, (3,), patches=False)
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 8, 7, 1)).astype(np.float32))
  params = jax.vmap(lambda k: slow.init(k, x[0]))(jax.random.split(jax.random.key(0), 2))
  close(jax.vmap(lambda k: fast.init(k, x[0]))(jax.random.split(jax.random.key(0), 2)), params)

  @jax.jit
  def outputs_and_grads(params, x):
    grads = lambda m: jax.vmap(jax.grad(lambda p, xc: jnp.sum(m.apply(p, xc) ** 2)))
    return [(jax.vmap(m.apply)(params, x), grads(m)(params, x)) for m in (fast, slow)]
  close(*outputs_and_grads(params, x))
