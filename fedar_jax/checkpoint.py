"""Orbax checkpoints of the server state, so a rerun of the same command resumes.

A checkpoint at step r holds the ServerState after r rounds (parameters and
round counter, with a leading sweep axis S in a sweep) and the metrics of
round r, so a finished run can still write its summary. Client randomness is
folded from (seed, round, client), so a resumed run computes exactly the
numbers an uninterrupted one does.
"""
import logging as py_logging
import os

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from fedar_jax import round as round_lib


def _quiet_orbax(record) -> bool:
  """absl log filter: Orbax's INFO chatter (several lines per save) is dropped."""
  return 'orbax' not in record.pathname or record.levelno >= py_logging.WARNING


logging.get_absl_logger().addFilter(_quiet_orbax)


def _abstract(tree, default):
  """ShapeDtypeStructs with the arrays' shardings (`default` where there is none)."""

  def leaf(a):
    sharding = getattr(a, 'sharding', None)
    return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding or default)
  return jax.tree.map(leaf, tree)


class Checkpoints:
  """The checkpoints in one directory, keeping the newest `keep`.

  Saves are synchronous, so a step that `latest_step` reports is complete on
  disk (Orbax writes to a temporary directory and renames it when done, so a
  process killed mid-save leaves the previous checkpoint as the latest).
  """

  def __init__(self, directory: str, keep: int):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                          item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self) -> int:
    """Rounds done at the newest checkpoint (0 if there is none)."""
    return self._manager.latest_step() or 0

  def save(self, state: round_lib.ServerState, metrics: dict) -> None:
    """Saves `state` and the metrics of its last round, at step state.round (max over S)."""
    rounds = state.round
    if hasattr(rounds, 'addressable_data'):  # A global array: read this process's part.
      rounds = rounds.addressable_data(0)
    step = int(np.max(np.asarray(rounds)))
    item = {'params': state.params, 'round': state.round, 'metrics': metrics}
    self._manager.save(step, args=ocp.args.StandardSave(item))
    self._manager.wait_until_finished()

  def restore(self, like_state: round_lib.ServerState, like_metrics: dict | None = None):
    """Restores the newest checkpoint as (ServerState, metrics).

    like_state, like_metrics: arrays or ShapeDtypeStructs with the structure,
    shapes and dtypes of what was saved (e.g. the initial state and
    `jax.eval_shape` of the round's metrics); like_metrics None takes the
    metrics' shapes from the checkpoint (no trace of the round needed).
    """
    if like_metrics is None:
      saved = self._manager.item_metadata(self.latest_step())['metrics']
      like_metrics = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), saved)
    default = getattr(like_state.round, 'sharding', None) or jax.sharding.SingleDeviceSharding(
        jax.devices()[0])  # For metrics given as shapes: placed like the round counter.
    target = _abstract({'params': like_state.params, 'round': like_state.round,
                        'metrics': like_metrics}, default)
    item = self._manager.restore(self.latest_step(), args=ocp.args.StandardRestore(target))
    return round_lib.ServerState(item['params'], item['round']), item['metrics']

  def close(self) -> None:
    self._manager.close()


def latest_step(directory: str) -> int:
  """Rounds done at the newest complete checkpoint in `directory` (0 if none or no directory)."""
  if not os.path.isdir(directory):
    return 0
  steps = ocp.utils.checkpoint_steps(os.path.abspath(directory))
  return max(steps, default=0)
