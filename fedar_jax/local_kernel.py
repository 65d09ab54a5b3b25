"""One client's whole local training of the MLP as one Pallas kernel (--local_kernel=pallas).

`local_train` computes what `client.local_train` computes for the MLP (models.MLP: Dense
layers with relu between them), the `ce` loss, the `adam` client optimizer and no
FedProx term: `epochs` passes over the client's rows, each in a fresh random order from
the epoch's key (real rows first, padding last), minibatches of `batch_size`, a step
whose batch holds no real row leaving parameters and Adam's state untouched, Adam
(optax defaults: b1 0.9, b2 0.999, eps 1e-8) started fresh. The results equal the XLA
path's to float32 reordering.

The kernel keeps the weights, Adam's two moments and the running loss in registers or
on-chip memory for the whole training, and reads the client's rows from device memory
once per epoch, each minibatch gathered by its row indices; forward, backward
(written out: softmax cross-entropy, relu, Dense) and the Adam update of a step are
fused in one loop body. One kernel call trains one client; under `vmap` (the round's
`for_each_client`) pallas_call's batching rule turns the client axis into the grid, one
program per client.

Shapes and dtypes of one client (M rows, D features, widths H_1..H_L, K classes, E
epochs, S = ceil(M / B) steps of B rows); every width the kernel sees is padded to
`padded_width` (a power of two, at least 16: Triton's tensor shapes and matmul
operands) with zeros, padded classes masked out of the softmax, so padding changes
no result:
  x        float32[M, ...] the client's rows (flattened to [M, D]), padded to [S*B, D']
  order    int32[E, S, B']   row index of each minibatch slot (padding slots: row 0)
  y        int32[E, S, B']   labels in minibatch order
  weight   float32[E, S, B'] 1 for a real row, 0 for padding
  params   Dense kernels float32[D'_in, D'_out], biases float32[D'_out] (padded)
  learning_rate float32[1]
  outputs  the trained params (padded shapes) and the last epoch's mean batch loss
           float32[1]

On a CPU the kernel runs in Pallas interpret mode (slow: for checking); on a GPU it
lowers with the Triton backend.
"""
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from fedar_jax import client
from fedar_jax.resample import gate

# Triton's least matmul operand side; every padded width is a power of two at least this.
MIN_WIDTH = 16
# optax.adam's defaults (the `adam` client optimizer).
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
# Logit of a padded class: its softmax probability is exactly 0.
_MASKED_LOGIT = -1e30


def padded_width(n: int) -> int:
  """The width the kernel holds a dimension of size n in: a power of two >= MIN_WIDTH."""
  return max(MIN_WIDTH, int(pl.next_power_of_2(n)))


def mlp_layers(params) -> list[tuple[jax.Array, jax.Array]]:
  """[(kernel float32[in, out], bias float32[out])] of a models.MLP's parameters, in order."""
  dense = params['params']
  names = [f'Dense_{i}' for i in range(len(dense))]
  if sorted(names) != sorted(dense):
    raise ValueError(f'the pallas local kernel trains models.MLP parameters (Dense_0..); '
                     f'got {sorted(dense)}')
  return [(dense[n]['kernel'], dense[n]['bias']) for n in names]


def _pad_to(a: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  return jnp.pad(a, [(0, s - n) for n, s in zip(a.shape, shape)])


def _dot(a, b, precision, contract=(1, 0)):
  """a @ b contracting a's dim contract[0] with b's dim contract[1] (2-D operands)."""
  return jax.lax.dot_general(a, b, (((contract[0],), (contract[1],)), ((), ())),
                             precision=precision, preferred_element_type=jnp.float32)


def _kernel_precision():
  """The dot precision of the trace's default matmul precision (--matmul_precision)."""
  value = jax.config.jax_default_matmul_precision
  return None if value is None else jax.lax.Precision(value)


def _forward_backward(layers, xb, yb, wb, num_classes, precision):
  """The minibatch's mean softmax cross-entropy over its real rows and its gradients.

  layers: [(kernel, bias)] padded; xb float32[B', D']; yb int32[B']; wb float32[B'].
  Returns (loss float32 scalar, [(d kernel, d bias)]).
  """
  acts, pre = [xb], []
  for kernel, bias in layers[:-1]:
    z = _dot(acts[-1], kernel, precision) + bias[None, :]
    pre.append(z)
    acts.append(jnp.maximum(z, 0.0))
  kernel, bias = layers[-1]
  logits = _dot(acts[-1], kernel, precision) + bias[None, :]
  classes = jnp.arange(logits.shape[1], dtype=jnp.int32)[None, :]
  logits = jnp.where(classes < num_classes, logits, _MASKED_LOGIT)
  # optax.softmax_cross_entropy_with_integer_labels, then the mean over real rows.
  shifted = logits - jnp.max(logits, axis=1, keepdims=True)
  onehot = (classes == yb[:, None]).astype(jnp.float32)
  exp = jnp.exp(shifted)
  total = jnp.sum(exp, axis=1)
  per_row = jnp.log(total) - jnp.sum(shifted * onehot, axis=1)
  count = jnp.maximum(jnp.sum(wb), 1.0)
  loss = jnp.sum(per_row * wb) / count
  delta = (exp / total[:, None] - onehot) * (wb / count)[:, None]
  grads = []
  for i in range(len(layers) - 1, -1, -1):
    grads.append((_dot(acts[i], delta, precision, (0, 0)), jnp.sum(delta, axis=0)))
    if i:
      delta = _dot(delta, layers[i][0], precision, (1, 1)) * (pre[i - 1] > 0).astype(
          jnp.float32)
  return loss, grads[::-1]


def _adam(p, g, mu, nu, bc1, bc2, lr):
  """One optax.adam step of a leaf: (new p, new mu, new nu); bc = 1 - b^count."""
  mu = (1 - ADAM_B1) * g + ADAM_B1 * mu
  nu = (1 - ADAM_B2) * (g * g) + ADAM_B2 * nu
  update = (mu / bc1) / (jnp.sqrt(nu / bc2) + ADAM_EPS)
  return p + (-lr) * update, mu, nu


def _kernel(num_layers, num_classes, epochs, steps, precision,
            lr_ref, order_ref, y_ref, w_ref, x_ref, *refs):
  """The fused local training of one client (refs as the module docstring)."""
  in_refs, out_refs = refs[:2 * num_layers], refs[2 * num_layers:]
  params = tuple(r[...] for r in in_refs)
  zeros = tuple(jnp.zeros_like(p) for p in params)
  lr = lr_ref[0]

  def step(e, s, carry):
    params, mu, nu, pow1, pow2, loss_sum, used = carry
    idx = order_ref[e, s, :]
    xb = x_ref[idx, :]
    wb = w_ref[e, s, :]
    layers = [(params[2 * i], params[2 * i + 1]) for i in range(num_layers)]
    loss, grads = _forward_backward(layers, xb, y_ref[e, s, :], wb, num_classes, precision)
    grads = [g for pair in grads for g in pair]
    new_pow1, new_pow2 = pow1 * ADAM_B1, pow2 * ADAM_B2
    stepped = [_adam(p, g, m, v, 1 - new_pow1, 1 - new_pow2, lr)
               for p, g, m, v in zip(params, grads, mu, nu)]
    real = jnp.sum(wb) > 0

    def keep(new, old):
      return jnp.where(real, new, old)
    return (tuple(keep(t[0], p) for t, p in zip(stepped, params)),
            tuple(keep(t[1], m) for t, m in zip(stepped, mu)),
            tuple(keep(t[2], v) for t, v in zip(stepped, nu)),
            keep(new_pow1, pow1), keep(new_pow2, pow2),
            loss_sum + jnp.where(real, loss, 0.0), used + real.astype(jnp.float32))

  def epoch(e, carry):
    carry = carry[:5] + (jnp.float32(0), jnp.float32(0))
    return jax.lax.fori_loop(0, steps, functools.partial(step, e), carry)

  carry = (params, zeros, zeros, jnp.float32(1), jnp.float32(1), jnp.float32(0),
           jnp.float32(0))
  params, *_, loss_sum, used = jax.lax.fori_loop(0, epochs, epoch, carry)
  for ref, p in zip(out_refs, params):
    ref[...] = p
  out_refs[-1][0] = loss_sum / jnp.maximum(used, 1.0)


def minibatch_order(key, mask: jax.Array, epochs: int, batch_size: int) -> jax.Array:
  """int32[epochs, S, batch_size]: the rows of each minibatch, as `client.local_train` draws
  them (per epoch key from `key`: real rows in random order, then padding).
  mask: bool[S * batch_size]."""
  def order(ekey):
    return client.epoch_order(jax.random.uniform(ekey, mask.shape), mask)
  orders = jax.vmap(order)(jax.random.split(key, epochs))
  return orders.reshape(epochs, -1, batch_size).astype(jnp.int32)


def local_train(params, key, x, y, mask, *, learning_rate, epochs: int, batch_size: int,
                interpret: bool | None = None):
  """`client.local_train` of a models.MLP with the ce loss and adam, as one kernel.

  Args:
    params: models.MLP parameters ({'params': {'Dense_i': {'kernel', 'bias'}}}).
    key: PRNG key (the minibatch orders, as `client.local_train`).
    x: float32[M, ...] (rows flattened to [M, D]); y: int32[M]; mask: bool[M].
    learning_rate: float32 scalar (may be traced).
    epochs, batch_size: static ints.
    interpret: run in Pallas interpret mode; None: on a CPU backend only.

  Returns:
    (params, loss float32): as `client.local_train`.
  """
  x = jnp.asarray(x, jnp.float32)
  x = x.reshape(x.shape[0], -1)
  y, mask = jnp.asarray(y, jnp.int32), jnp.asarray(mask, bool)
  m = x.shape[0]
  steps = -(-m // batch_size)
  if steps * batch_size > m:
    x, y, mask = gate.pad_rows(x, y, mask, steps * batch_size)
  layers = mlp_layers(params)
  num_classes = layers[-1][0].shape[1]
  widths = [x.shape[1]] + [k.shape[1] for k, _ in layers]
  padded = [padded_width(w) for w in widths]
  lanes = padded_width(batch_size)
  order = minibatch_order(key, mask, epochs, batch_size)
  lane_pad = [(0, 0), (0, 0), (0, lanes - batch_size)]
  weight = jnp.pad(mask[order].astype(jnp.float32), lane_pad)
  labels = jnp.pad(y[order], lane_pad)
  order = jnp.pad(order, lane_pad)
  flat = []
  for i, (kernel, bias) in enumerate(layers):
    flat += [_pad_to(kernel.astype(jnp.float32), (padded[i], padded[i + 1])),
             _pad_to(bias.astype(jnp.float32), (padded[i + 1],))]
  x = _pad_to(x, (x.shape[0], padded[0]))
  lr = jnp.reshape(jnp.asarray(learning_rate, jnp.float32), (1,))
  if interpret is None:
    interpret = _interpret_on(jax.default_backend())
  out_shape = [jax.ShapeDtypeStruct(p.shape, jnp.float32) for p in flat]
  out_shape.append(jax.ShapeDtypeStruct((1,), jnp.float32))
  kernel = functools.partial(_kernel, len(layers), num_classes, epochs, steps,
                             _kernel_precision())
  extra = {} if interpret else {'compiler_params': _gpu_params()}
  *trained, loss = pl.pallas_call(kernel, out_shape=out_shape, interpret=interpret,
                                  name='fused_local_training', **extra)(
      lr, order, labels, weight, x, *flat)
  out = {}
  for i, (kernel, bias) in enumerate(layers):
    out[f'Dense_{i}'] = {'kernel': trained[2 * i][:kernel.shape[0], :kernel.shape[1]],
                         'bias': trained[2 * i + 1][:bias.shape[0]]}
  return {'params': out}, loss[0]


def _interpret_on(backend: str) -> bool:
  """Whether the kernel runs in interpret mode on `backend` (a CPU); a GPU lowers it with
  Triton; other backends are refused."""
  if backend not in ('cpu', 'gpu'):
    raise ValueError(f'the pallas local kernel runs on GPUs (Triton) and, in interpret mode, '
                     f'on CPUs; not on {backend}; use --local_kernel=xla')
  return backend == 'cpu'


def _gpu_params():
  from jax.experimental.pallas import triton as plgpu
  return plgpu.CompilerParams(num_warps=4, num_stages=1)


def train_fn(epochs: int, batch_size: int):
  """The standard client's `train` (`client.ClientPipeline`) on this kernel:
  (params, key, rows, facts, learning_rate) -> (params, loss)."""
  def train(params, key, rows, facts, learning_rate):
    del facts  # The ce loss reads no class counts.
    return local_train(params, key, *rows, learning_rate=learning_rate, epochs=epochs,
                       batch_size=batch_size)
  return train

