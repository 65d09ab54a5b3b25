"""Running the client update over blocks of clients with an exact running FedAvg sum.

The P client slots of a round are split into `num_blocks` blocks of
`block_size` clients: `lax.scan` over blocks, `vmap` inside a block. Only one
block's intermediates (resampled data, distance matrices, client parameters)
are alive at a time, so memory is bounded by the block size, not by P.
Aggregation stays exact: the scan carries the weighted parameter sum and the
summed weight; the server step (server.py) divides once at the end. Robust
aggregators need every client's model: with `keep_params` the scan also
returns each block's client models (P x model size in memory) and they are
aggregated after the scan.

Slot s lives in block s % num_blocks at position s // num_blocks, so when the
slot axis is sharded over devices in contiguous chunks, every block takes an
equal share of clients from every device (no data moves between devices).
"""
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedar_jax import aggregate


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def block_layout(num_slots: int, block: int, devices: int = 1) -> tuple[int, int]:
  """(num_blocks, block_size) for `num_slots` clients in blocks of at most ~`block`.

  block_size is a multiple of `devices` (each block splits evenly over the
  mesh), and num_blocks * block_size >= num_slots with the least padding for
  that number of blocks. block <= 0 (or >= num_slots) means one block.
  """
  if block <= 0 or block >= num_slots:
    return 1, round_up(num_slots, devices)
  blocks = math.ceil(num_slots / round_up(block, devices))
  return blocks, round_up(math.ceil(num_slots / blocks), devices)


class BlockResult(NamedTuple):
  """param_sum: float32 pytree, sum of weight * client parameters over used clients.
  weight: float32 scalar, the summed weight. stats: the update's stats, [P] leaves
  in slot order. finite: bool[P], the client's update was finite.
  weights: float32[P], each slot's weight (0: not counted).
  client_params: [P, ...] leaves in slot order with `keep_params`, else None."""
  param_sum: object
  weight: jax.Array
  stats: object
  finite: jax.Array
  weights: jax.Array
  client_params: object = None


def run_clients(update: Callable, params, key_fn: Callable, client_id, x, y, mask,
                active, threshold, learning_rate, *, num_blocks: int = 1,
                constrain: Callable = lambda a: a, keep_params: bool = False,
                update_scale: jax.Array | None = None) -> BlockResult:
  """Every client's update, aggregated into a weighted sum, `num_blocks` blocks at a time.

  Args:
    update: (params, key, x[N,...], y[N], mask[N], threshold, lr) -> (params, stats);
      stats must have an `n_real` field (the FedAvg weight).
    params: global parameters (replicated to every client).
    key_fn: client_id int32[B] -> PRNG keys [B].
    client_id: int32[P]; x: float[P, N, ...]; y: int32[P, N]; mask: bool[P, N].
    active: bool[P]; inactive slots (padding, unsampled) get weight 0.
    threshold, learning_rate: traced scalars.
    num_blocks: static; P must be a multiple of it.
    constrain: applied to every [B, ...] / [B, blocks, ...] input (e.g. a
      sharding constraint on the client axis).
    keep_params: static; also return every slot's client model.
    update_scale: float32[P] or None; a slot whose scale s is not 1 sends
      params + s * (its model - params) (a model-replacement attacker).

  Returns:
    BlockResult. A client is left out of the sum (weight 0) when inactive or
    when any of its updated parameters is NaN/inf.
  """
  slots = client_id.shape[0]
  if slots % num_blocks:
    raise ValueError(f'{slots} client slots do not split into {num_blocks} blocks')

  def one_block(ids, xb, yb, mb, ab, sb=None):
    client_params, stats = jax.vmap(update, in_axes=(None, 0, 0, 0, 0, None, None))(
        params, key_fn(ids), xb, yb, mb, threshold, learning_rate)
    if sb is not None:
      def scaled(q, g):
        s = sb.reshape((-1,) + (1,) * (q.ndim - 1))
        return jnp.where(s != 1, g + s * (q - g), q).astype(q.dtype)
      client_params = jax.tree.map(scaled, client_params, params)
    finite = aggregate.finite_updates(client_params)
    weight = jnp.where(ab & finite, stats.n_real, 0).astype(jnp.float32)
    return (aggregate.weighted_sum(client_params, weight), jnp.sum(weight),
            (stats, finite, weight, client_params if keep_params else None))

  inputs = (client_id, x, y, mask, active) + (() if update_scale is None else (update_scale,))
  inputs = jax.tree.map(constrain, inputs)
  if num_blocks == 1:
    param_sum, weight, per_slot = one_block(*inputs)
    return BlockResult(param_sum, weight, *per_slot)

  size = slots // num_blocks
  split = jax.tree.map(lambda a: constrain(a.reshape((size, num_blocks) + a.shape[1:])), inputs)

  def body(carry, j):
    block = jax.tree.map(
        lambda a: constrain(jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)), split)
    param_sum, weight, per_slot = one_block(*block)
    carry = (jax.tree.map(jnp.add, carry[0], param_sum), carry[1] + weight)
    return carry, per_slot

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  (param_sum, weight), per_block = jax.lax.scan(body, (zeros, jnp.float32(0)),
                                                jnp.arange(num_blocks))
  # [blocks, size, ...] -> slot order s = position * num_blocks + block.
  per_slot = jax.tree.map(
      lambda a: jnp.swapaxes(a, 0, 1).reshape((slots,) + a.shape[2:]), per_block)
  return BlockResult(param_sum, weight, *per_slot)
