"""One client's FedAR update: pre-training check, local resampling, local training.

All functions are pure and written for one client; the round vmaps them.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedar_jax import losses
from fedar_jax.methods import MethodParams
from fedar_jax.methods import registry
from fedar_jax.resample import Resampler
from fedar_jax.resample import gate

# Momentum of --client_optimizer=momentum (SGD with heavy-ball momentum).
CLIENT_MOMENTUM = 0.9


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


class LocalMethod(NamedTuple):
  """The client's loss and optimizer names (static) and the traced MethodParams."""
  loss: str = 'ce'
  optimizer: str = 'adam'
  params: MethodParams | None = None


# Mean softmax cross-entropy over real rows: logits float[B, K], y int32[B], mask bool[B].
masked_cross_entropy = losses.cross_entropy


def momentum_sgd(learning_rate) -> optax.GradientTransformation:
  """SGD with heavy-ball momentum CLIENT_MOMENTUM (--client_optimizer=momentum)."""
  return optax.sgd(learning_rate, momentum=CLIENT_MOMENTUM)


def client_optimizer(name: str, learning_rate) -> optax.GradientTransformation:
  """The registered client optimizer `name` (adam, sgd, momentum, ...) at `learning_rate`
  (may be traced)."""
  return registry.resolve('client_optimizer', name)(learning_rate)


def local_train(apply_fn: Callable, params, key, x, y, mask, *, learning_rate,
                epochs: int, batch_size: int, loss_fn: Callable = masked_cross_entropy,
                optimizer: str = 'adam', prox_mu=0.0):
  """Local training on the client's rows (Adam by default): `epochs` passes, reshuffled
  every epoch, minibatches of `batch_size`.

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
    loss_fn: (logits, y, mask) -> scalar (losses.make_loss); default cross-entropy.
    optimizer: `client_optimizer` name (static).
    prox_mu: FedProx (Li et al. 2020) proximal weight (may be traced): the step
      minimises loss + prox_mu / 2 * ||params - incoming params||^2; 0 is plain training.

  Returns:
    (params, loss) with loss the mean batch loss (without the prox term) of the last
    epoch (float32).
  """
  x, y, mask = jnp.asarray(x), jnp.asarray(y), jnp.asarray(mask)
  m = x.shape[0]
  steps = -(-m // batch_size)
  pad = steps * batch_size - m
  if pad:
    x, y, mask = gate.pad_rows(x, y, mask, m + pad)
  opt = client_optimizer(optimizer, learning_rate)
  anchor = params

  def objective(p, xb, yb, mb):
    loss = loss_fn(apply_fn(p, xb), yb, mb)
    prox = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(p),
                                                     jax.tree.leaves(anchor)))
    return loss + 0.5 * prox_mu * prox, loss

  def step(carry, idx):
    p, opt_state = carry
    xb, yb, mb = x[idx], y[idx], mask[idx]
    (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(p, xb, yb, mb)
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
                  threshold, learning_rate, method: LocalMethod = LocalMethod(),
                  resample_key=None):
  """FedAR on one client: resample iff IR > threshold, then train locally.

  Args:
    apply_fn, epochs, batch_size: as `local_train`.
    resampler: the client-side resampler (static).
    num_classes: K (static).
    params: incoming global parameters.
    key: this client's PRNG key for this round.
    x: float[N, ...]; y: int32[N]; mask: bool[N] (padded client data).
    threshold, learning_rate: float scalars (may be traced).
    method: client loss (from the real, pre-resampling class counts), optimizer and
      FedProx weight.
    resample_key: if given, resampling uses this key's first half instead of
      `key`'s (e.g. the first round's key for `--resample_every=once`).

  Returns:
    (params, ClientStats).
  """
  k_res, k_train = jax.random.split(key)
  if resample_key is not None:
    k_res, _ = jax.random.split(resample_key)
  counts = gate.class_counts(y, mask, num_classes)
  ir = gate.imbalance_ratio(counts)
  fire = gate.fedar_gate(ir, threshold)
  *resampled, fell_back = resampler.resample(k_res, x, y, mask)
  data = gate.select(fire, tuple(resampled), (x, y, mask))
  p = method.params if method.params is not None else MethodParams.create()
  params, loss = local_train(apply_fn, params, k_train, *data, learning_rate=learning_rate,
                             epochs=epochs, batch_size=batch_size,
                             loss_fn=losses.make_loss(method.loss, counts, p),
                             optimizer=method.optimizer, prox_mu=p.prox_mu)
  return params, client_stats(resampler, ir, fire, mask, data[2], loss, fell_back)


def train_prepared(apply_fn: Callable, epochs: int, batch_size: int, params, key, rows, y, mask,
                   learning_rate, method: LocalMethod = LocalMethod()):
  """Local training on rows resampled before training (`--resample_every=once`).

  rows: `pretraining.ResampledRows` (x float[M, ...] and the client's facts:
  ir, resampled, fallback, n_real, counts int32[K]); y: int32[M]; mask: bool[M].
  key: the round key; its second half trains, as in `client_update`.

  Returns:
    (params, ClientStats) with the pre-training step's facts.
  """
  _, k_train = jax.random.split(key)
  p = method.params if method.params is not None else MethodParams.create()
  params, loss = local_train(apply_fn, params, k_train, rows.x, y, mask,
                             learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
                             loss_fn=losses.make_loss(method.loss, rows.counts, p),
                             optimizer=method.optimizer, prox_mu=p.prox_mu)
  return params, ClientStats(rows.ir, rows.resampled, rows.n_real,
                             jnp.sum(mask).astype(jnp.int32), loss, rows.fallback)


def client_stats(resampler: Resampler, ir, fire, mask, train_mask, loss,
                 fell_back) -> ClientStats:
  """One client's ClientStats. `resampled` (and so `fallback`) is False for the
  `none` resampler, where nothing is resampled whatever the gate says."""
  resampled = fire if resampler.resamples else jnp.asarray(False)
  return ClientStats(ir, resampled, jnp.sum(mask).astype(jnp.int32),
                     jnp.sum(train_mask).astype(jnp.int32), loss, resampled & fell_back)
