"""One client's FedAR work as a pair: `prepare` (the pre-training check and local
resampling), then `train` (local training from the global parameters).

`prepare_client` holds the one gate sequence (class counts, imbalance ratio, the
gate, the resampler, the gated rows, the client's facts); the standard client
(`fedar_client`) and the latent-space clients (latent.py) are `ClientPipeline`s
built on it. `client_update` runs a pair on one client; `train_prepared` trains
on rows prepared once before training (`--resample_every=once`, pretraining.py).
All functions are pure and written for one client; for_each_client.py runs them
for every client.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedar_jax import data_dtype
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


class ClientFacts(NamedTuple):
  """What a client's `prepare` found (leading [C] after vmap).

  ir: float32 imbalance ratio of the real rows. resampled: bool, the gate fired
  (always False for the `none` resampler, where nothing is resampled).
  fallback: bool, resampled and the resampler fell back where imbalanced-learn
  would have raised (see `Resampler.resample`). n_real: int32 real rows (the
  FedAvg weight). counts: int32[K] real class counts (the client loss's class
  priors, `losses.make_loss`).
  """
  ir: jax.Array
  resampled: jax.Array
  fallback: jax.Array
  n_real: jax.Array
  counts: jax.Array


class PreparedRows(NamedTuple):
  """A client's rows after `prepare`, held in the x slot of ClientData (its y int32[M]
  and mask bool[M] in ClientData's y and mask), so client sampling, blocks and sharding
  carry them like raw rows. x: [M, ...] in the rows' stored dtype (--data_dtype); facts:
  ClientFacts; raw: the client's own rows (x [N, ...] as stored, y int32[N], mask bool[N])
  where the round evaluates clients on them (--eval_clients), else None."""
  x: jax.Array
  facts: ClientFacts
  raw: tuple | None = None


class ClientPipeline(NamedTuple):
  """A client's work as a pair of pure single-client functions.

  prepare(params, key, x[N, ...], y int32[N], mask bool[N], threshold) -> (rows, facts):
    the pre-training check and gated resampling; rows = (x, y int32[M], mask bool[M])
    with x what `train` reads (the rows x[M, ...] for the standard client), facts
    ClientFacts. params: the incoming global parameters.
  train(params, key, rows, facts, learning_rate) -> (params, loss float32): local
    training from the incoming parameters.
  hoistable: `prepare` ignores `params`, so `--resample_every=once` may run it once
    before training (with params None; pretraining.py).
  """
  prepare: Callable
  train: Callable
  hoistable: bool = True


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


def transpose_matrices(params):
  """`params` with every 2-D leaf transposed (its own inverse); other leaves as they are."""
  return jax.tree.map(lambda a: a.T if a.ndim == 2 else a, params)


# Mantissa bits of a float32 `jax.random.uniform` draw: every draw is a multiple of 2^-23.
_UNIFORM_BITS = 23


def epoch_order(u, mask):
  """The rows' order in one epoch: real rows by increasing draw (ties by index), then the
  padding rows by index; int32[M]. Equal to the stable
  `argsort(where(mask, u, 2.0))`.

  u: float32[M] `jax.random.uniform` draws in [0, 1) (multiples of 2^-23); mask: bool[M].
  Where M < 512 each real row's (draw, index) packs into one uint32 key, and one
  single-operand sort of those keys (several times faster on XLA:CPU than argsort's
  two-operand sort) orders them; larger M falls back to the argsort.
  """
  m = mask.shape[0]
  index_bits = m.bit_length()  # Index m - 1 < 2^index_bits - 1: no real key is all ones.
  if _UNIFORM_BITS + index_bits > 32:
    return jnp.argsort(jnp.where(mask, u, 2.0)).astype(jnp.int32)
  rows = jnp.arange(m, dtype=jnp.uint32)
  draw = (u * 2.0 ** _UNIFORM_BITS).astype(jnp.uint32)
  keys = jnp.where(mask, (draw << index_bits) | rows, jnp.uint32(0xFFFFFFFF))
  order = (jax.lax.sort(keys) & jnp.uint32((1 << index_bits) - 1)).astype(jnp.int32)
  # The sort leaves the padding rows' slots last (all-ones keys); fill them by index.
  slot = jnp.sum(mask) + jnp.cumsum(~mask) - 1
  return order.at[jnp.where(mask, m, slot)].set(rows.astype(jnp.int32), mode='drop')


def local_train(apply_fn: Callable, params, key, x, y, mask, *, learning_rate,
                epochs: int, batch_size: int, loss_fn: Callable = masked_cross_entropy,
                optimizer: str = 'adam', prox_mu=0.0, transposed_matrices: bool = True):
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
    x: float32 or bfloat16[M, ...] (--data_dtype; each minibatch is cast to float32);
      y: int32[M]; mask: bool[M].
    learning_rate: float scalar (may be traced).
    epochs, batch_size: static ints.
    loss_fn: (logits, y, mask) -> scalar (losses.make_loss); default cross-entropy.
    optimizer: `client_optimizer` name (static).
    prox_mu: FedProx (Li et al. 2020) proximal weight (may be traced): the step
      minimises loss + prox_mu / 2 * ||params - incoming params||^2; 0 is plain training.
    transposed_matrices: static; train the 2-D leaves (Dense kernels [D, H]) stored
      transposed ([H, D]) and transpose them back at the end. The same arithmetic (Adam
      and the prox term are elementwise), but under vmap XLA:CPU runs the first layer's
      skinny matmuls with the contracted features minor in both operands, faster
      (BUILD_NOTES, "CPU levers of local training"). False: the kernels as stored.

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
  layout = transpose_matrices if transposed_matrices else (lambda p: p)
  params = layout(params)
  anchor = params

  def objective(current, xb, yb, mb):
    loss = loss_fn(apply_fn(layout(current), xb), yb, mb)
    prox = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(current),
                                                     jax.tree.leaves(anchor)))
    return loss + 0.5 * prox_mu * prox, loss

  def step(carry, idx):
    current, opt_state = carry
    xb, yb, mb = data_dtype.computed(x[idx]), y[idx], mask[idx]
    (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(current, xb, yb, mb)
    updates, new_opt_state = opt.update(grads, opt_state, current)
    new = (optax.apply_updates(current, updates), new_opt_state)
    has_real = jnp.any(mb)
    carry = jax.tree.map(lambda n, o: jnp.where(has_real, n, o), new, (current, opt_state))
    return carry, (loss, has_real)

  def epoch(carry, ekey):
    # Real rows in random order first, padding last.
    order = epoch_order(jax.random.uniform(ekey, mask.shape), mask)
    carry, (losses, used) = jax.lax.scan(step, carry, order.reshape(steps, batch_size))
    mean_loss = jnp.sum(losses * used) / jnp.maximum(jnp.sum(used), 1)
    return carry, mean_loss

  (params, _), losses = jax.lax.scan(epoch, (params, opt.init(params)),
                                     jax.random.split(key, epochs))
  return layout(params), losses[-1]


def prepare_client(resampler: Resampler, num_classes: int, key, x, y, mask, threshold):
  """FedAR's pre-training check on one client: resample iff IR > threshold.

  Args:
    resampler: the client-side resampler (static).
    num_classes: K (static).
    key: the resampling key.
    x: float[N, D] rows the resampler reads; y: int32[N]; mask: bool[N].
    threshold: float scalar (may be traced).

  Returns:
    ((x[M, D], y int32[M], mask bool[M]), ClientFacts): the resampled rows where the
    gate fired, else the rows padded to the resampler's capacity M.
  """
  counts = gate.class_counts(y, mask, num_classes)
  ir = gate.imbalance_ratio(counts)
  fire = gate.fedar_gate(ir, threshold)
  *resampled, fell_back = resampler.resample(key, x, y, mask)
  rows = gate.select(fire, tuple(resampled), (x, y, mask))
  resampled = fire if resampler.resamples else jnp.asarray(False)
  return rows, ClientFacts(ir, resampled, resampled & fell_back,
                           jnp.sum(mask).astype(jnp.int32), counts)


def train_client(apply_fn: Callable, epochs: int, batch_size: int, method: LocalMethod, params,
                 key, rows, facts: ClientFacts, learning_rate):
  """The standard client's local training (`local_train`) on prepared rows (x[M, ...],
  y[M], mask[M]), with the method's loss from the real class counts `facts.counts`,
  its optimizer and FedProx weight. Returns (params, loss)."""
  method_params = method.params if method.params is not None else MethodParams.create()
  return local_train(apply_fn, params, key, *rows, learning_rate=learning_rate, epochs=epochs,
                     batch_size=batch_size,
                     loss_fn=losses.make_loss(method.loss, facts.counts, method_params),
                     optimizer=method.optimizer, prox_mu=method_params.prox_mu)


def fedar_client(apply_fn: Callable, resampler: Resampler, num_classes: int, epochs: int,
                 batch_size: int, method: LocalMethod = LocalMethod()) -> ClientPipeline:
  """The standard FedAR client: `prepare_client` on the input rows, then `train_client`.

  Args: apply_fn, epochs, batch_size as `local_train`; resampler, num_classes as
    `prepare_client`; method: client loss, optimizer and FedProx weight.
  """
  def prepare(params, key, x, y, mask, threshold):
    del params  # Resampling reads the client's rows alone.
    return prepare_client(resampler, num_classes, key, x, y, mask, threshold)

  def train(params, key, rows, facts, learning_rate):
    return train_client(apply_fn, epochs, batch_size, method, params, key, rows, facts,
                        learning_rate)

  return ClientPipeline(prepare, train)


def client_update(pipeline: ClientPipeline, params, key, x, y, mask, threshold,
                  learning_rate, resample_key=None):
  """One client's round: `pipeline.prepare`, then `pipeline.train`.

  Args:
    pipeline: the client's pair (e.g. `fedar_client`).
    params: incoming global parameters.
    key: this client's PRNG key for this round; its first half resamples, its
      second half trains.
    x: float32 or bfloat16[N, ...] (--data_dtype; cast to float32 before `prepare`);
      y: int32[N]; mask: bool[N] (padded client data).
    threshold, learning_rate: float scalars (may be traced).
    resample_key: if given, resampling uses this key's first half instead of
      `key`'s (e.g. the first round's key for `--resample_every=once`).

  Returns:
    (params, ClientStats).
  """
  k_res, k_train = jax.random.split(key)
  if resample_key is not None:
    k_res, _ = jax.random.split(resample_key)
  rows, facts = pipeline.prepare(params, k_res, data_dtype.computed(x), y, mask, threshold)
  params, loss = pipeline.train(params, k_train, rows, facts, learning_rate)
  return params, client_stats(facts, rows[2], loss)


def train_prepared(pipeline: ClientPipeline, params, key, prepared: PreparedRows, y, mask,
                   learning_rate):
  """One client's round on rows prepared before training (`--resample_every=once`):
  `pipeline.train` alone, with the round key's second half (as `client_update`).

  prepared: the client's PreparedRows (x float[M, ...] and its facts); y: int32[M];
  mask: bool[M].

  Returns:
    (params, ClientStats) with the prepared facts.
  """
  _, k_train = jax.random.split(key)
  rows = (prepared.x, y, mask)
  params, loss = pipeline.train(params, k_train, rows, prepared.facts, learning_rate)
  return params, client_stats(prepared.facts, mask, loss)


def client_stats(facts: ClientFacts, train_mask, loss) -> ClientStats:
  """One client's ClientStats from its facts, the mask of the rows it trained on
  (bool[M]) and its training loss."""
  return ClientStats(facts.ir, facts.resampled, facts.n_real,
                     jnp.sum(train_mask).astype(jnp.int32), loss, facts.fallback)
