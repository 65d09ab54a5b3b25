"""One client's FedAR update: pre-training check, local resampling, local training.

All functions are pure and written for one client; the round vmaps them.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedar_jax.resample import Resampler
from fedar_jax.resample import gate


class ClientStats(NamedTuple):
  """Per-client diagnostics of one round (scalars per client; [C] after vmap).

  ir: float32 imbalance ratio of the real data. resampled: bool, the gate fired.
  n_real: int32 real samples (the FedAvg weight). n_train: int32 rows trained on.
  loss: float32 mean training loss of the last local epoch.
  fallback: bool, the gate fired and the resampler fell back where
  imbalanced-learn would have raised (see `Resampler.resample`).
  """
  ir: jax.Array
  resampled: jax.Array
  n_real: jax.Array
  n_train: jax.Array
  loss: jax.Array
  fallback: jax.Array


def masked_cross_entropy(logits: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy over real rows (0 when there are none).

  logits: float[B, K]; y: int32[B]; mask: bool[B].
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  w = mask.astype(ce.dtype)
  return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)


def local_train(apply_fn: Callable, params, key, x, y, mask, *, learning_rate,
                epochs: int, batch_size: int):
  """Adam on the client's rows: `epochs` passes, reshuffled every epoch, minibatches of `batch_size`.

  Like Keras' `fit`, each epoch visits the real rows in a fresh random order in
  ceil(n / batch_size) batches (the last one partial). Shapes are static, so
  ceil(M / batch_size) steps always run; a step whose batch has no real row
  leaves parameters and optimizer state untouched. The optimizer starts fresh
  every round (stateless clients).

  Args:
    apply_fn: (params, x[B, ...]) -> logits[B, K].
    params: model parameters (pytree).
    key: PRNG key.
    x: float[M, ...]; y: int32[M]; mask: bool[M].
    learning_rate: float scalar (may be traced).
    epochs, batch_size: static ints.

  Returns:
    (params, loss) with loss the mean batch loss of the last epoch (float32).
  """
  x, y, mask = jnp.asarray(x), jnp.asarray(y), jnp.asarray(mask)
  m = x.shape[0]
  steps = -(-m // batch_size)
  pad = steps * batch_size - m
  if pad:
    x, y, mask = gate.pad_rows(x, y, mask, m + pad)
  opt = optax.adam(learning_rate)

  def loss_fn(p, xb, yb, mb):
    return masked_cross_entropy(apply_fn(p, xb), yb, mb)

  def step(carry, idx):
    p, opt_state = carry
    xb, yb, mb = x[idx], y[idx], mask[idx]
    loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb, mb)
    updates, new_opt_state = opt.update(grads, opt_state, p)
    new = (optax.apply_updates(p, updates), new_opt_state)
    has_real = jnp.any(mb)
    carry = jax.tree.map(lambda n, o: jnp.where(has_real, n, o), new, (p, opt_state))
    return carry, (loss, has_real)

  def epoch(carry, ekey):
    # Real rows in random order first, padding last.
    order = jnp.argsort(jnp.where(mask, jax.random.uniform(ekey, mask.shape), 2.0))
    carry, (losses, used) = jax.lax.scan(step, carry, order.reshape(steps, batch_size))
    mean_loss = jnp.sum(losses * used) / jnp.maximum(jnp.sum(used), 1)
    return carry, mean_loss

  (params, _), losses = jax.lax.scan(epoch, (params, opt.init(params)),
                                     jax.random.split(key, epochs))
  return params, losses[-1]


def client_update(apply_fn: Callable, resampler: Resampler, num_classes: int,
                  epochs: int, batch_size: int, params, key, x, y, mask,
                  threshold, learning_rate):
  """FedAR on one client: resample iff IR > threshold, then train locally.

  Args:
    apply_fn, epochs, batch_size: as `local_train`.
    resampler: the client-side resampler (static).
    num_classes: K (static).
    params: incoming global parameters.
    key: this client's PRNG key for this round.
    x: float[N, ...]; y: int32[N]; mask: bool[N] (padded client data).
    threshold, learning_rate: float scalars (may be traced).

  Returns:
    (params, ClientStats).
  """
  k_res, k_train = jax.random.split(key)
  counts = gate.class_counts(y, mask, num_classes)
  ir = gate.imbalance_ratio(counts)
  fire = gate.fedar_gate(ir, threshold)
  *resampled, fell_back = resampler.resample(k_res, x, y, mask)
  data = gate.select(fire, tuple(resampled), (x, y, mask))
  params, loss = local_train(apply_fn, params, k_train, *data, learning_rate=learning_rate,
                             epochs=epochs, batch_size=batch_size)
  return params, client_stats(resampler, ir, fire, mask, data[2], loss, fell_back)


def client_stats(resampler: Resampler, ir, fire, mask, train_mask, loss,
                 fell_back) -> ClientStats:
  """One client's ClientStats. `resampled` (and so `fallback`) is False for the
  `none` resampler, where nothing is resampled whatever the gate says."""
  resampled = fire if resampler.resamples else jnp.asarray(False)
  return ClientStats(ir, resampled, jnp.sum(mask).astype(jnp.int32),
                     jnp.sum(train_mask).astype(jnp.int32), loss, resampled & fell_back)
