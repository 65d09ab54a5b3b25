"""One backend runs a function on every client slot: vmap inside a block, a scan over blocks.

Both the round (`fedar_round`: each client's prepare and train, or train alone
on rows prepared once) and the once-only pre-training step (`pretraining`:
each client's prepare alone) run their clients through `run`.

The P client slots are split into `num_blocks` blocks of P / num_blocks
slots: `lax.scan` over blocks, `vmap` inside a block. Only one block's
intermediates (resampled rows, distance matrices, client models) are alive at
a time, so memory is bounded by the block size, not by P. A block may reduce
its clients' outputs to sums (the round's weighted FedAvg sum); the scan
carries the running sums, so the result stays exact, and the per-slot outputs
come back in slot order.

Slot s lives in block s % num_blocks at position s // num_blocks, so when the
slot axis is sharded over devices in contiguous chunks, every block takes an
equal share of clients from every device (no data moves between devices).
With a mesh, every slot-axis input, every block and every per-slot output is
constrained to the mesh's client axis (`sharding.client_constraint`).
"""
import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from fedar_jax import sharding


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


def blocks_for(num_slots: int, block: int, mesh: Mesh | None) -> int:
  """The number of blocks `num_slots` slots run in with blocks of ~`block` clients:
  `block_layout`'s, where its blocks tile the slots exactly, else 1."""
  blocks, size = block_layout(num_slots, block, sharding.client_devices(mesh))
  return blocks if blocks * size == num_slots else 1


def run(client_fn: Callable, slots, *, num_blocks: int = 1, mesh: Mesh | None = None,
        block_sum: Callable | None = None, sum_init=None):
  """client_fn on every client slot, `num_blocks` blocks one after the other.

  Args:
    client_fn: one slot's inputs (`slots` without the leading axis) -> its outputs
      (a pytree); vmapped over a block. Values it closes over are shared by every slot.
    slots: pytree of [P, ...] leaves, one row per client slot.
    num_blocks: static; P must be a multiple of it.
    mesh: constrains the slot axis of inputs, blocks and outputs to its CLIENTS axis.
    block_sum: optional (block's slots [B, ...], block's outputs [B, ...]) ->
      (sums, per-slot outputs [B, ...]); the sums are added up over the blocks.
    sum_init: zeros shaped like block_sum's sums (the scan's initial carry); needed
      with block_sum and more than one block.

  Returns:
    (sums, per-slot outputs [P, ...] in slot order); sums is None without block_sum.
  """
  total = jax.tree.leaves(slots)[0].shape[0]
  if total % num_blocks:
    raise ValueError(f'{total} client slots do not split into {num_blocks} blocks')
  constrain = sharding.client_constraint(mesh)

  def one_block(block):
    outs = jax.vmap(client_fn)(block)
    return (None, outs) if block_sum is None else block_sum(block, outs)

  slots = jax.tree.map(constrain, slots)
  if num_blocks == 1:
    sums, per_slot = one_block(slots)
    return sums, jax.tree.map(constrain, per_slot)

  size = total // num_blocks
  split = jax.tree.map(lambda a: constrain(a.reshape((size, num_blocks) + a.shape[1:])), slots)

  def body(carry, j):
    block = jax.tree.map(
        lambda a: constrain(jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)), split)
    sums, per_slot = one_block(block)
    if block_sum is not None:
      carry = jax.tree.map(jnp.add, carry, sums)
    return carry, per_slot

  sums, per_block = jax.lax.scan(body, sum_init if block_sum is not None else (),
                                 jnp.arange(num_blocks))
  # [blocks, size, ...] -> slot order s = position * num_blocks + block.
  per_slot = jax.tree.map(
      lambda a: constrain(jnp.swapaxes(a, 0, 1).reshape((total,) + a.shape[2:])), per_block)
  return (sums if block_sum is not None else None), per_slot
