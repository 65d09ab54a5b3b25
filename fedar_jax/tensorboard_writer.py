"""TensorBoard event files: every metrics.csv column as a scalar per round.

Written with tensorboardX (protobuf only, no TensorFlow). A single run writes
DIR/tb/ (the run directory itself); a sweep writes one run directory per point,
DIR/tb/<point>/, named by `point_dir` over every swept setting. Each run records
its settings (every sweep setting column, `sweep_axes.point_hparams`) with the
HParams plugin's summaries, so TensorBoard's HParams tab shows one table of the
runs by setting with their final HPARAM_METRICS (filter, sort, average over
seeds there). Open with `tensorboard --logdir DIR/tb`; several single runs side
by side with `tensorboard --logdir PARENT` over their workdirs.
"""
import math
import os

# metrics.csv columns that are not scalars of the round (the step itself).
NOT_SCALARS = ('round',)

# The scalars the HParams table shows per point (their last value).
HPARAM_METRICS = ('gmean', 'f1', 'sensitivity', 'specificity', 'precision', 'accuracy',
                  'train_loss')


def scalars(row: dict) -> dict[str, float]:
  """The finite numeric values of a metrics row {column: str or number}, less NOT_SCALARS."""
  out = {}
  for name, value in row.items():
    if name in NOT_SCALARS:
      continue
    try:
      value = float(value)
    except (TypeError, ValueError):
      continue
    if math.isfinite(value):
      out[name] = value
  return out


def point_dir(settings: dict) -> str:
  """A sweep point's run directory name, e.g. 'imbalance_ratio=10,resampler=smote,seed=0'."""
  return ','.join(f'{k}={v}' for k, v in settings.items())


class ScalarWriter:
  """Writes one scalar per metric column per round to a TensorBoard run directory.

  `first_round`: the first round this writer writes. When it is above 1 (a
  resumed run), the events file records a purge step, so TensorBoard drops
  events of rounds >= first_round that an interrupted invocation wrote before.
  `hparams`: {setting: float, int or str}, written as the run's HParams record
  (experiment, session start and end) with HPARAM_METRICS as its metrics.
  """

  def __init__(self, logdir: str, first_round: int = 1, hparams: dict | None = None):
    from tensorboardX import SummaryWriter  # Imported here: only writers need protobuf.
    os.makedirs(logdir, exist_ok=True)
    self._writer = SummaryWriter(logdir, purge_step=first_round if first_round > 1 else None,
                                 flush_secs=10)
    if hparams:
      from tensorboardX.summary import hparams as hparams_summaries
      for summary in hparams_summaries(hparams, dict.fromkeys(HPARAM_METRICS, 0.0)):
        self._writer.file_writer.add_summary(summary)

  def write(self, round_index: int, row: dict) -> None:
    """Adds every scalar of `row` (a metrics.csv row as {column: value}) at step round_index."""
    for name, value in scalars(row).items():
      self._writer.add_scalar(name, value, round_index)

  def close(self) -> None:
    self._writer.close()
