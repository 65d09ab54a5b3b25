"""The FedAR round: one pure function, jitted once.

round_step(state, clients, test, hparams):
  1. every client (vmap): key from (seed, round, client_id), pre-training
     check, gated resampling, local Adam training from the global parameters;
  2. FedAvg weighted by real sample counts, leaving out clients whose update
     is not finite (counted in metrics['dropped_clients']);
  3. evaluation of the new global model on the balanced test set.
Hyperparameters that only change numbers (threshold, learning rate, seed) are
traced, so changing them never recompiles.

Scale (static, in RoundSpec): `clients_per_round` samples that many clients
per round (keys from (seed, round)); `client_block` runs the clients in
blocks (lax.scan over blocks, vmap inside one) with an exact running FedAvg
sum; `mesh` shards the client axis over devices (see sharding.py).
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from fedar_jax import client
from fedar_jax import client_blocks
from fedar_jax import metrics
from fedar_jax import precision
from fedar_jax import sampling
from fedar_jax import sharding
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
  """metrics: `metrics.evaluate`'s dict for the new global model, plus
  `dropped_clients` (int32, participating clients left out for a non-finite update).
  clients: ClientStats with a leading slot axis [P] (P = C without sampling).
  client_index: int32[P], the client id of each slot, -1 for padding slots
  (None from the reference round)."""
  metrics: dict
  clients: client.ClientStats
  client_index: jax.Array | None = None


class RoundSpec(NamedTuple):
  """Everything static about a round (changing any of it recompiles).

  apply_fn: (params, x[B, ...]) -> logits[B, K]. resampler: client-side
  resampler. num_classes: K. local_epochs, batch_size: local training.
  num_clients: real clients C (the data may hold extra empty padding rows
  after them); 0 means every data row is a real client.
  clients_per_round: clients sampled per round; 0 means all C.
  client_block: clients per block (rounded up to a multiple of the mesh's
  client devices); 0 means one block. mesh: shards the client axis (None: no
  sharding constraints).
  local_update: optional custom single-client update with the signature of
  `local_update_fn`'s result (e.g. `latent.make_latent_update`); None is the
  standard `client.client_update`.
  matmul_precision: the `precision.PRECISIONS` entry the round is traced under.
  """
  apply_fn: Callable
  resampler: Resampler
  num_classes: int
  local_epochs: int
  batch_size: int
  local_update: Callable | None = None
  # --- Scale ---
  num_clients: int = 0
  clients_per_round: int = 0
  client_block: int = 0
  mesh: Mesh | None = None
  # --- Numerics ---
  matmul_precision: str = 'default'


def slot_layout(spec: RoundSpec, num_clients: int) -> tuple[int, int]:
  """(num_blocks, block_size) of a round's client slots for C = `num_clients`."""
  devices = sharding.client_devices(spec.mesh) if spec.mesh is not None else 1
  slots = spec.clients_per_round or num_clients
  return client_blocks.slot_layout(slots, spec.client_block, devices)


def data_rows(spec: RoundSpec, num_clients: int) -> int:
  """Rows the ClientData must have for C real clients (the rest empty padding)."""
  if spec.clients_per_round:
    devices = sharding.client_devices(spec.mesh) if spec.mesh is not None else 1
    return client_blocks.round_up(num_clients, devices)
  blocks, size = slot_layout(spec, num_clients)
  return blocks * size


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
  if spec.mesh is not None:
    client_axis = jax.sharding.NamedSharding(spec.mesh, jax.sharding.PartitionSpec(
        sharding.CLIENTS))
    constrain = lambda a: jax.lax.with_sharding_constraint(a, client_axis)
  else:
    constrain = lambda a: a

  def participants(clients: ClientData, hparams: HParams, round_index):
    """The round's client slots (ClientData [P]) and which of them are active, bool[P]."""
    rows = clients.x.shape[0]
    num_clients = spec.num_clients or rows
    blocks, size = slot_layout(spec, num_clients)
    slots = blocks * size
    if not spec.clients_per_round:
      if rows != slots:
        raise ValueError(f'client data has {rows} rows; this layout needs {slots} '
                         f'(pad with data_rows(spec, {num_clients}))')
      return clients, jnp.arange(rows) < num_clients, blocks
    chosen = sampling.sample_clients(hparams.seed, round_index, num_clients,
                                     spec.clients_per_round)
    extra = slots - spec.clients_per_round
    chosen = jnp.concatenate([chosen, jnp.full((extra,), chosen[0], jnp.int32)])
    picked = jax.tree.map(lambda a: constrain(jnp.take(a, chosen, axis=0)), clients)
    return picked, jnp.arange(slots) < spec.clients_per_round, blocks

  def round_step(state: ServerState, clients: ClientData, test: TestData, hparams: HParams):
    data, active, blocks = participants(clients, hparams, state.round)
    result = client_blocks.run_clients(
        update, state.params, lambda ids: client_keys(hparams.seed, state.round, ids),
        data.client_id, data.x, data.y, data.mask, active, hparams.threshold,
        hparams.learning_rate, num_blocks=blocks, constrain=constrain)
    # FedAvg; if no client counts (all empty or all dropped) the model stays as it was.
    params = jax.tree.map(
        lambda s, old: jnp.where(result.weight > 0, s / jnp.maximum(result.weight, 1e-30),
                                 old).astype(old.dtype), result.param_sum, state.params)
    evaluation = metrics.evaluate(spec.apply_fn, params, test.x, test.y, test.mask,
                                  spec.num_classes)
    evaluation['dropped_clients'] = jnp.sum(active & ~result.finite).astype(jnp.int32)
    client_index = jnp.where(active, data.client_id, -1)
    return (ServerState(params, state.round + 1),
            RoundOutput(evaluation, result.stats, client_index))

  return precision.with_matmul_precision(round_step, spec.matmul_precision)
