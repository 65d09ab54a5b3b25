"""Where the round's time goes: local training on the paper workload, taken apart.

  python experiments/profile_local_train.py [--clients=100]

Prints JSON lines (milliseconds, medians of 5 runs), all measured in this run:
  local_train     the vmapped local training of C clients (5 epochs, batch 32,
                  220 rows, 432 features, MLP 10)
  fwd_bwd_sgd     the same steps with forward/backward and plain SGD only
                  (no shuffling gathers, no Adam, no empty-batch masking)
  batched_matmul  one first-layer matmul of all clients, [C,32,432] x [C,432,10]
  weight_grad     one first-layer weight gradient, [C,32,432]^T x [C,32,10]
  dense_matmul    a 2048 x 2048 f32 matmul, for GFLOP/s reference
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import workload
from fedar_jax import client
from fedar_jax import models


def median_ms(f, *args, repeats=5):
  jax.block_until_ready(f(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - t)
  return 1e3 * float(np.median(times))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--clients', type=int, default=100)
  c = parser.parse_args().clients
  n, d, b, epochs, (h,) = (workload.PAPER[k] for k in (
      'samples_per_client', 'feature_dim', 'batch_size', 'local_epochs', 'hidden'))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(c, n, d)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, 2, (c, n)).astype(np.int32))
  mask = jnp.ones((c, n), bool)
  model = models.MLP(num_classes=2, hidden=(h,))
  params = model.init(jax.random.key(0), x[0, :1])
  keys = jax.random.split(jax.random.key(1), c)
  steps = epochs * -(-n // b)

  local = jax.jit(jax.vmap(lambda k, xc, yc, mc: client.local_train(
      model.apply, params, k, xc, yc, mc, learning_rate=1e-3, epochs=epochs, batch_size=b)))

  def sgd(xc, yc):
    def body(p, i):
      start = (i * b) % (n - b)
      xb = jax.lax.dynamic_slice_in_dim(xc, start, b)
      yb = jax.lax.dynamic_slice_in_dim(yc, start, b)
      g = jax.grad(lambda q: client.masked_cross_entropy(model.apply(q, xb), yb,
                                                         jnp.ones(b, bool)))(p)
      return jax.tree.map(lambda a, ga: a - 1e-3 * ga, p, g), None
    return jax.lax.scan(body, params, jnp.arange(steps))[0]

  w = jnp.ones((c, d, h))
  g = jnp.ones((c, b, h))
  dense = jnp.ones((2048, 2048))
  flops = 2 * c * b * d * h
  rows = {
      'local_train': median_ms(local, keys, x, y, mask),
      'fwd_bwd_sgd': median_ms(jax.jit(jax.vmap(sgd)), x, y),
      'batched_matmul': median_ms(jax.jit(lambda a, k: jnp.einsum('cbd,cdh->cbh', a, k)),
                                  x[:, :b], w),
      'weight_grad': median_ms(jax.jit(lambda a, k: jnp.einsum('cbd,cbh->cdh', a, k)),
                               x[:, :b], g),
      'dense_matmul': median_ms(jax.jit(lambda a: a @ a), dense),
  }
  for name, ms in rows.items():
    record = {'part': name, 'ms': round(ms, 3)}
    if name in ('batched_matmul', 'weight_grad'):
      record['gflops'] = round(flops / ms / 1e6, 2)
      record['per_round_ms'] = round(ms * steps, 1)
    if name == 'dense_matmul':
      record['gflops'] = round(2 * 2048**3 / ms / 1e6, 2)
    print(json.dumps(record))
  print(json.dumps({'steps_per_round': steps, 'clients': c}))


if __name__ == '__main__':
  main()
