"""Progress on stderr (tqdm): a bar over rounds (of a run, or of a sweep's groups and
points) with an ETA from the measured rate, timed stages (loading data, compiling), and a
short log format.

On a terminal the bar redraws in place (tqdm) and a stage shows while it runs;
otherwise (logs, pipes) each update is one line and a stage one line when it
ends. Progress lines carry no logging prefix.
"""
import contextlib
import logging as std_logging
import sys
import time
from typing import Callable

from tqdm import tqdm

_BAR = '{{desc}} {{percentage:3.0f}}%|{{bar:{width}}}| '  # .format(width=...)


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def _isatty(stream) -> bool:
  return hasattr(stream, 'isatty') and stream.isatty()


class Progress:
  """Counts rounds (of a run, or of groups of sweep points) and the points finished.

  The ETA is the measured rate times the rounds left: the wall time since this
  invocation's first round began over the rounds done since, so whatever the
  rounds cost on the way (a group's compile that the previous group's rounds did
  not hide, checkpoints) is in it; unknown ('eta ?') before the first round.

  `desc` starts each line ('sweep', 'run'). With total_points > 1 the line also
  counts the points finished ('points 6/12  rounds 5/10'; a group's points finish
  together, with its last round); with one point it reads 'round 5/10' (`unit` names
  what is counted: 'shard 5/10' for a population's shards).
  `clock`: seconds, default `time.perf_counter`.
  """

  def __init__(self, total_rounds: int, total_points: int, stream=None, width: int = 24,
               desc: str = 'sweep', unit: str = 'round',
               clock: Callable[[], float] = time.perf_counter):
    self.total_rounds, self.total_points = total_rounds, total_points
    self.unit = unit
    self.stream = stream or sys.stderr
    self.width, self.desc = width, desc
    self.rounds = self.points = 0
    self._clock = clock
    self._start = clock()
    self._first_round_start: float | None = None
    self._rounds_here = 0
    self._bar = (tqdm(total=max(total_rounds, 1), desc=desc, file=self.stream, leave=True,
                      bar_format=_BAR.format(width=width), mininterval=0, dynamic_ncols=True)
                 if _isatty(self.stream) else None)

  def skip(self, rounds: int, points: int = 0) -> None:
    """Counts work already done by an earlier invocation (resumed)."""
    self.rounds += rounds
    self.points += points

  def eta(self) -> float | None:
    """Seconds left at the measured rate (class doc); None before the first round."""
    if not self._rounds_here:
      return None
    per_round = (self._clock() - self._first_round_start) / self._rounds_here
    return per_round * max(self.total_rounds - self.rounds, 0)

  def round_done(self, seconds: float, label: str, points_done: int = 0) -> None:
    """Records one round (of every point in a group) that took `seconds` and ended now, and
    `points_done` points finished with it, then redraws."""
    if self._first_round_start is None:
      self._first_round_start = self._clock() - seconds
    self._rounds_here += 1
    self.rounds += 1
    self.points += points_done
    self.draw(label)

  def text(self, label: str) -> str:
    """The part of the line after the bar: counts, `label`, elapsed time and ETA."""
    counts = (f'points {self.points}/{self.total_points}  rounds {self.rounds}/'
              f'{self.total_rounds}' if self.total_points > 1
              else f'{self.unit} {self.rounds}/{self.total_rounds}')
    eta = self.eta()
    return (f'{counts}  {label}  elapsed {_clock(self._clock() - self._start)}  '
            f'eta {"?" if eta is None else _clock(eta)}')

  def draw(self, label: str) -> None:
    text = self.text(label).replace('{', '{{').replace('}', '}}')
    if self._bar is not None:
      self._bar.bar_format = _BAR.format(width=self.width) + text
      self._bar.n = min(self.rounds, self._bar.total)
      self._bar.refresh()
      if self.rounds >= self.total_rounds:
        self.close()
    else:
      self.stream.write(tqdm.format_meter(
          min(self.rounds, self.total_rounds), max(self.total_rounds, 1),
          self._clock() - self._start, prefix=self.desc, ascii=True,
          bar_format=_BAR.format(width=self.width) + text) + '\n')
      self.stream.flush()

  def close(self) -> None:
    """Ends the terminal bar (keeps its last line); later draws print lines."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None


@contextlib.contextmanager
def stage(name: str, stream=None):
  """Times a block: on a terminal `name ...` shows while it runs; when the block ends
  without error, one line `name: 1.2s`. Nothing stays behind on an error."""
  stream = stream or sys.stderr
  start = time.perf_counter()
  bar = (tqdm(total=None, desc=name, file=stream, leave=False, bar_format='{desc} ...')
         if _isatty(stream) else None)
  try:
    yield
  finally:
    if bar is not None:
      bar.close()
  tqdm.write(f'{name}: {time.perf_counter() - start:.1f}s', file=stream)


def use_short_log_format() -> None:
  """absl log lines as 'I 12:34:56 message' (no thread id, file and line)."""
  from absl import logging
  logging.get_absl_handler().setFormatter(
      std_logging.Formatter('%(levelname).1s %(asctime)s %(message)s', '%H:%M:%S'))
