"""The FedAR round: one pure function, jitted once.

round_step(state, clients, test, hparams):
  1. every client (vmap): key from (seed, round, client_id), pre-training
     check, gated resampling, local Adam training from the global parameters;
  2. FedAvg weighted by real sample counts;
  3. evaluation of the new global model on the balanced test set.
Hyperparameters that only change numbers (threshold, learning rate, seed) are
traced, so changing them never recompiles.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedar_jax import aggregate
from fedar_jax import client
from fedar_jax import metrics
from fedar_jax.data.federated import ClientData, TestData
from fedar_jax.resample import Resampler


class HParams(NamedTuple):
  """Traced per-run scalars: threshold float32, learning_rate float32, seed int32."""
  threshold: jax.Array
  learning_rate: jax.Array
  seed: jax.Array

  @classmethod
  def create(cls, threshold: float, learning_rate: float, seed: int) -> 'HParams':
    return cls(jnp.float32(threshold), jnp.float32(learning_rate), jnp.int32(seed))


class ServerState(NamedTuple):
  """Global model parameters and the number of rounds done (int32)."""
  params: object
  round: jax.Array


class RoundOutput(NamedTuple):
  """metrics: `metrics.evaluate`'s dict for the new global model.
  clients: ClientStats with a leading [C] axis."""
  metrics: dict
  clients: client.ClientStats


class RoundSpec(NamedTuple):
  """Everything static about a round (changing any of it recompiles).

  apply_fn: (params, x[B, ...]) -> logits[B, K]. resampler: client-side
  resampler. num_classes: K. local_epochs, batch_size: local training.
  local_update: optional custom single-client update with the signature of
  `local_update_fn`'s result (e.g. `latent.make_latent_update`); None is the
  standard `client.client_update`.
  """
  apply_fn: Callable
  resampler: Resampler
  num_classes: int
  local_epochs: int
  batch_size: int
  local_update: Callable | None = None


def client_keys(seed: jax.Array, round_index: jax.Array, client_id: jax.Array) -> jax.Array:
  """PRNG keys folded from (seed, round, client): key[C] for client_id[C]."""
  round_key = jax.random.fold_in(jax.random.key(seed), round_index)
  return jax.vmap(lambda c: jax.random.fold_in(round_key, c))(client_id)


def local_update_fn(spec: RoundSpec) -> Callable:
  """The single-client update (params, key, x, y, mask, threshold, lr) -> (params, stats)."""
  if spec.local_update is not None:
    return spec.local_update
  def update(params, key, x, y, mask, threshold, learning_rate):
    return client.client_update(spec.apply_fn, spec.resampler, spec.num_classes,
                                spec.local_epochs, spec.batch_size, params, key, x, y, mask,
                                threshold, learning_rate)
  return update


def make_round(spec: RoundSpec) -> Callable:
  """Builds the pure round function; wrap it in `jax.jit`.

  Returns:
    round_step(state: ServerState, clients: ClientData, test: TestData,
    hparams: HParams) -> (ServerState, RoundOutput).
  """
  update = local_update_fn(spec)

  def round_step(state: ServerState, clients: ClientData, test: TestData, hparams: HParams):
    keys = client_keys(hparams.seed, state.round, clients.client_id)
    client_params, stats = jax.vmap(update, in_axes=(None, 0, 0, 0, 0, None, None))(
        state.params, keys, clients.x, clients.y, clients.mask, hparams.threshold,
        hparams.learning_rate)
    params = aggregate.fedavg(client_params, stats.n_real)
    evaluation = metrics.evaluate(spec.apply_fn, params, test.x, test.y, test.mask,
                                  spec.num_classes)
    return ServerState(params, state.round + 1), RoundOutput(evaluation, stats)

  return round_step
