"""The paper's pre-training step: every client's `prepare` hoisted out of the rounds.

With `--resample_every=once` (the default), FedAR's pre-training check and
resampling run once per run instead of every round:

  prepare_clients(clients, hparams): every client's `prepare` (imbalance
      ratio, the gate IR > threshold, the gated resampled rows), with
      resampling keys from (seed, client) alone (those of the first round,
      round index 0), so the result is the same whenever it is computed (a
      resumed run recomputes it);
  the round then runs every client's `train` on its prepared rows
      (`round_spec`), with fresh training keys every round, and reports the
      prepared ClientStats facts (ir, resampled, fallback, n_real) every round.

Round 1 therefore equals round 1 of `--resample_every=round`; later rounds
differ only in that resampling is not redrawn.

The prepared rows ride in the `x` slot of ClientData as `client.PreparedRows`
(rows plus the client's facts), so the round's client slots, sampling, blocks
and sharding carry them unchanged. The clients run in the round's blocks on
the round's mesh (`for_each_client.run`).
"""
from typing import Callable

import jax
import jax.numpy as jnp

from fedar_jax import client
from fedar_jax import data_dtype
from fedar_jax import fedar_round
from fedar_jax import for_each_client
from fedar_jax.data.federated import ClientData

MODES = ('once', 'round')
# The round index whose resampling keys `once` uses (the first round's).
ONCE_ROUND = 0


def check_hoistable(spec: fedar_round.RoundSpec) -> None:
  """Raises ValueError unless the spec's client `prepare` can run once before training
  (it must not read the global parameters: latent resampling's does)."""
  if not fedar_round.client_pipeline(spec).hoistable:
    raise ValueError('resampling once needs a client whose prepare does not read the global '
                     'model (not latent resampling); use resample_every=round')


def make_prepare_clients(spec: fedar_round.RoundSpec) -> Callable:
  """Builds the pre-training step; wrap it in `jax.jit` (vmap over a sweep axis S of hparams).

  Clients run in the round's blocks (`spec.client_block`) on its mesh, so memory
  stays bounded like the round's.

  Returns:
    prepare_clients(clients: ClientData [R, N], hparams) -> ClientData with
    x: client.PreparedRows [R, M, ...] (x in the dtype of the input rows), y int32[R, M],
    mask bool[R, M], the same client_id
    (with `spec.eval_clients`, PreparedRows.raw keeps the input rows for the evaluation).
  """
  check_hoistable(spec)
  prepare = fedar_round.client_pipeline(spec).prepare

  def prepare_clients(clients: ClientData, hparams: fedar_round.HParams) -> ClientData:
    def prepare_slot(slot):
      key, x, y, mask = slot
      k_res, _ = jax.random.split(key)  # The round key's resampling half, as client_update.
      (xs, ys, ms), facts = prepare(None, k_res, data_dtype.computed(x), y, mask,
                                    hparams.threshold)
      # The prepared rows stay on the device in the dtype the rows came in (--data_dtype).
      raw = (x, y, mask) if spec.eval_clients else None
      return client.PreparedRows(xs.astype(x.dtype), facts, raw), ys, ms

    rows = clients.client_id.shape[0]
    keys = fedar_round.client_keys(hparams.seed, jnp.int32(ONCE_ROUND), clients.client_id)
    _, (prepared, y, mask) = for_each_client.run(
        prepare_slot, (keys, clients.x, clients.y, clients.mask),
        num_blocks=for_each_client.blocks_for(rows, spec.client_block, spec.mesh),
        mesh=spec.mesh)
    return ClientData(prepared, y, mask, clients.client_id)

  return prepare_clients


def round_spec(spec: fedar_round.RoundSpec) -> fedar_round.RoundSpec:
  """The spec of the round that trains on `make_prepare_clients`'s output
  (`client.train_prepared`: `train` alone, with the round key's training half)."""
  return spec._replace(trains_prepared=True)
