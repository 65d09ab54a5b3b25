"""Orbax checkpoints of the server state, so a rerun of the same command resumes.

A checkpoint at step r holds the ServerState after r rounds (parameters,
round counter, the server optimizer's state if it has one and the adaptive DP clip
norm with --dp=adaptive, with a leading
sweep axis S in a sweep), the metrics of round r (so a finished run can still
write its summary), and the CSV rows of rounds 1..r (so a missing, truncated or
corrupt metrics.csv / sweep.csv is rewritten on resume). Client randomness is
folded from (seed, round, client), so a resumed run computes exactly the
numbers an uninterrupted one does.

A checkpoint that does not read back (truncated or garbled files) is moved
aside to `<dir>/unreadable-<step>` with a warning, and the newest intact one is
used instead.
"""
import logging as py_logging
import os
import shutil

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from fedar_jax import checkpoint_record
from fedar_jax import fedar_round
from fedar_jax import std_streams


def _quiet_orbax(record) -> bool:
  """absl log filter: Orbax's INFO chatter (several lines per save) is dropped."""
  return 'orbax' not in record.pathname or record.levelno >= py_logging.WARNING


def quiet_orbax_logs() -> None:
  """Drops Orbax's INFO lines from the absl log (the command lines call this once)."""
  logger = logging.get_absl_logger()
  if _quiet_orbax not in logger.filters:
    logger.addFilter(_quiet_orbax)


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

  def __init__(self, directory: str, keep: int, settings: dict | None = None):
    """settings: what every checkpoint records as the settings that made it
    (checkpoint_record.py; None records none)."""
    self._directory = os.path.abspath(directory)
    self._settings = settings
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(
        self._directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'rows': ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int:
    """Rounds done at the newest checkpoint (0 if there is none); not checked for damage."""
    return self._manager.latest_step() or 0

  def save(self, state: fedar_round.ServerState, metrics: dict, rows=()) -> None:
    """Saves `state`, the metrics of its last round and `rows`, at step state.round (max over S).

    rows: every CSV row written so far (lists of str/int/float cells), rewritten
    to the CSV file on resume.
    """
    rounds = state.round
    if hasattr(rounds, 'addressable_data'):  # A global array: read this process's part.
      rounds = rounds.addressable_data(0)
    step = int(np.max(np.asarray(rounds)))
    item = {'params': state.params, 'round': state.round, 'metrics': metrics}
    if state.opt_state is not None:
      item['opt_state'] = state.opt_state
    if state.dp_clip is not None:
      item['dp_clip'] = state.dp_clip
    record = checkpoint_record.make(list(rows), self._settings)
    # A failed write (a full disk) raises here; what Orbax's threads print meanwhile is dropped.
    with std_streams.held():
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(item), rows=ocp.args.JsonSave(record)))
      self._manager.wait_until_finished()

  def resume_point(self) -> tuple[int, list[list[str]]]:
    """(step, rows) of the newest checkpoint that reads back in full; (0, []) if none.

    Newer checkpoints that do not read back are moved aside with a warning.
    """
    # Multi-host: arrays span processes and read back only with a target; read the rows alone.
    items = {'rows': ocp.args.JsonRestore()}
    if jax.process_count() == 1:
      items['state'] = ocp.args.StandardRestore()
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        item = self._manager.restore(step, args=ocp.args.Composite(**items))
        jax.block_until_ready(item.get('state'))
        return step, [list(row) for row in item['rows']['rows']]
      except Exception as e:  # Orbax/TensorStore/JSON errors have no common base.
        self._set_aside(step, e)
    return 0, []

  def _set_aside(self, step: int, error: Exception) -> None:
    src = os.path.join(self._directory, str(step))
    dst = os.path.join(self._directory, f'unreadable-{step}')
    first_line = (str(error).splitlines() or [''])[0][:200]
    logging.warning('checkpoint %s does not read back (%s: %s); moved to %s, resuming from an '
                    'older one', src, type(error).__name__, first_line, dst)
    if jax.process_index() == 0:
      shutil.rmtree(dst, ignore_errors=True)  # An earlier set-aside copy of the same step.
      os.replace(src, dst)
    self._manager.reload()

  def restore(self, like_state: fedar_round.ServerState, like_metrics: dict | None = None,
              step: int = 0):
    """Restores checkpoint `step` (default: the newest) as (ServerState, metrics).

    like_state, like_metrics: arrays or ShapeDtypeStructs with the structure,
    shapes and dtypes of what was saved (e.g. the initial state and
    `jax.eval_shape` of the round's metrics); like_metrics None takes the
    metrics' shapes from the checkpoint (no trace of the round needed).
    """
    if like_metrics is None:
      saved = self._manager.item_metadata(step or self.latest_step())['state']['metrics']
      like_metrics = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), saved)
    default = getattr(like_state.round, 'sharding', None) or jax.sharding.SingleDeviceSharding(
        jax.devices()[0])  # For metrics given as shapes: placed like the round counter.
    like = {'params': like_state.params, 'round': like_state.round, 'metrics': like_metrics}
    if like_state.opt_state is not None:
      like['opt_state'] = like_state.opt_state
    if like_state.dp_clip is not None:
      like['dp_clip'] = like_state.dp_clip
    item = self._manager.restore(step or self.latest_step(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(like, default))))['state']
    return (fedar_round.ServerState(item['params'], item['round'], item.get('opt_state'),
                                    item.get('dp_clip')),
            item['metrics'])

  def close(self) -> None:
    self._manager.close()


def latest_step(directory: str) -> int:
  """Rounds done at the newest complete checkpoint in `directory` (0 if none or no directory)."""
  if not os.path.isdir(directory):
    return 0
  steps = ocp.utils.checkpoint_steps(os.path.abspath(directory))
  return max(steps, default=0)


def resume_point(directory: str, keep: int) -> tuple[int, list[list[str]]]:
  """`Checkpoints(directory, keep).resume_point()` without creating `directory` if absent."""
  if not os.path.isdir(directory):
    return 0, []
  ckpt = Checkpoints(directory, keep)
  try:
    return ckpt.resume_point()
  finally:
    ckpt.close()
