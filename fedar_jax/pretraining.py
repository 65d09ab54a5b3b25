"""The paper's pre-training step: every client resamples once, before training.

With `--resample_every=once` (the default), FedAR's pre-training check and
resampling run once per run instead of every round:

  prepare(clients, hparams): every client's imbalance ratio, the gate
      IR > threshold and the gated resampled rows, with resampling keys from
      (seed, client) alone (those of the first round, round index 0), so the
      result is the same whenever it is computed (a resumed run recomputes it);
  the round then trains every client on its prepared rows (`round_spec`),
      with fresh training keys every round, and reports the prepared
      ClientStats facts (ir, resampled, fallback, n_real) every round.

Round 1 therefore equals round 1 of `--resample_every=round`; later rounds
differ only in that resampling is not redrawn.

The prepared rows ride in the `x` slot of ClientData as a `ResampledRows`
pytree (rows plus the per-client facts), so the round's client slots,
sampling, blocks and sharding carry them unchanged.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedar_jax import client
from fedar_jax import client_blocks
from fedar_jax import fedar_round
from fedar_jax import sharding
from fedar_jax.data.federated import ClientData
from fedar_jax.resample import gate

MODES = ('once', 'round')
# The round index whose resampling keys `once` uses (the first round's).
ONCE_ROUND = 0


class ResampledRows(NamedTuple):
  """A client's rows after the pre-training step (leading [C] after vmap).

  x: float32[M, ...] the gated rows (resampled where the gate fired, else the
  real rows padded to M). ir: float32 imbalance ratio of the real rows.
  resampled, fallback: bool, as `client.ClientStats`. n_real: int32 real rows
  (the FedAvg weight). counts: int32[K] real class counts (the client loss's
  class priors, `losses.make_loss`).
  """
  x: jax.Array
  ir: jax.Array
  resampled: jax.Array
  fallback: jax.Array
  n_real: jax.Array
  counts: jax.Array


def resample_client(spec: fedar_round.RoundSpec, key, x, y, mask, threshold):
  """One client's pre-training step: (ResampledRows, y int32[M], mask bool[M]).

  key: the client's round key (split like `client.client_update`: the first
  half resamples). x: float[N, ...]; y: int32[N]; mask: bool[N].
  """
  k_res, _ = jax.random.split(key)
  counts = gate.class_counts(y, mask, spec.num_classes)
  ir = gate.imbalance_ratio(counts)
  fire = gate.fedar_gate(ir, threshold)
  *resampled, fell_back = spec.resampler.resample(k_res, x, y, mask)
  xs, ys, ms = gate.select(fire, tuple(resampled), (x, y, mask))
  stats = client.client_stats(spec.resampler, ir, fire, mask, ms, jnp.float32(0), fell_back)
  return (ResampledRows(xs, stats.ir, stats.resampled, stats.fallback, stats.n_real,
                        counts.astype(jnp.int32)), ys, ms)


def make_prepare(spec: fedar_round.RoundSpec) -> Callable:
  """Builds the pre-training step; wrap it in `jax.jit` (vmap over a sweep axis S of hparams).

  Clients run in the round's blocks (`spec.client_block`: `lax.map` over
  blocks, vmap inside one), so memory stays bounded like the round's.

  Returns:
    prepare(clients: ClientData [R, N], hparams) -> ClientData with
    x: ResampledRows [R, M, ...], y int32[R, M], mask bool[R, M], the same client_id.
  """
  if spec.local_update is not None:
    raise ValueError('resampling once needs the standard client update (not latent '
                     'resampling)')
  if spec.mesh is not None:
    axis = jax.sharding.NamedSharding(spec.mesh, jax.sharding.PartitionSpec(sharding.CLIENTS))
    constrain = lambda a: jax.lax.with_sharding_constraint(a, axis)
  else:
    constrain = lambda a: a

  def prepare(clients: ClientData, hparams: fedar_round.HParams) -> ClientData:
    rows = clients.client_id.shape[0]
    devices = sharding.client_devices(spec.mesh) if spec.mesh is not None else 1
    blocks, size = client_blocks.block_layout(rows, spec.client_block, devices)
    if blocks * size != rows:
      blocks, size = 1, rows
    keys = fedar_round.client_keys(hparams.seed, jnp.int32(ONCE_ROUND), clients.client_id)

    def one_block(k, x, y, mask):
      return jax.vmap(resample_client, in_axes=(None, 0, 0, 0, 0, None))(
          spec, k, x, y, mask, hparams.threshold)

    inputs = jax.tree.map(constrain, (keys, clients.x, clients.y, clients.mask))
    if blocks == 1:
      out = one_block(*inputs)
    else:  # Slot s in block s % blocks, as client_blocks.run_clients.
      split = jax.tree.map(lambda a: a.reshape((size, blocks) + a.shape[1:]), inputs)
      out = jax.lax.map(lambda j: one_block(*jax.tree.map(
          lambda a: constrain(jax.lax.dynamic_index_in_dim(a, j, 1, keepdims=False)), split)),
                        jnp.arange(blocks))
      out = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1).reshape((rows,) + a.shape[2:]), out)
    rows_out, y, mask = jax.tree.map(constrain, out)
    return ClientData(rows_out, y, mask, clients.client_id)

  return prepare


def round_spec(spec: fedar_round.RoundSpec) -> fedar_round.RoundSpec:
  """The spec of the round that trains on `make_prepare`'s output (`client.train_prepared`:
  local training only, with the round key's training half and the client's method)."""
  return spec._replace(trains_prepared=True)
