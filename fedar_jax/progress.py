"""Progress on stderr (tqdm): a bar over rounds (of a run, or of a sweep's groups and
points) with an ETA, timed stages (loading data, compiling), and a short log format.

On a terminal the bar redraws in place (tqdm) and a stage shows while it runs;
otherwise (logs, pipes) each update is one line and a stage one line when it
ends. Progress lines carry no logging prefix.
"""
import contextlib
import logging as std_logging
import statistics
import sys
import time

from tqdm import tqdm

_BAR = '{{desc}} {{percentage:3.0f}}%|{{bar:{width}}}| '  # .format(width=...)


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def _isatty(stream) -> bool:
  return hasattr(stream, 'isatty') and stream.isatty()


class Progress:
  """Counts rounds (of a run, or of groups of sweep points); the ETA is the median
  time per round (this invocation, compilation excluded) times the rounds left,
  plus the mean compile time per group times the groups left to compile.

  `desc` starts each line ('sweep', 'run'). With total_points > 1 the line also
  counts points done ('points 0/6  rounds 5/10'); with one point it reads
  'round 5/10' (`unit` names what is counted: 'shard 5/10' for a population's shards).
  """

  def __init__(self, total_rounds: int, total_points: int, stream=None, width: int = 24,
               desc: str = 'sweep', unit: str = 'round'):
    self.total_rounds, self.total_points = total_rounds, total_points
    self.unit = unit
    self.stream = stream or sys.stderr
    self.width, self.desc = width, desc
    self.rounds = self.points = 0
    self._round_s: list[float] = []
    self._compile_s: list[float] = []
    self._start = time.perf_counter()
    self._bar = (tqdm(total=max(total_rounds, 1), desc=desc, file=self.stream, leave=True,
                      bar_format=_BAR.format(width=width), mininterval=0, dynamic_ncols=True)
                 if _isatty(self.stream) else None)

  def skip(self, rounds: int, points: int = 0) -> None:
    """Counts work already done by an earlier invocation (resumed)."""
    self.rounds += rounds
    self.points += points

  def compiled(self, seconds: float) -> None:
    self._compile_s.append(seconds)

  def eta(self, groups_left: int = 0) -> float:
    per_round = statistics.median(self._round_s) if self._round_s else 0.0
    compile_s = statistics.mean(self._compile_s) if self._compile_s else 0.0
    return per_round * (self.total_rounds - self.rounds) + compile_s * groups_left

  def round_done(self, seconds: float, label: str, groups_left: int = 0,
                 points_done: int = 0) -> None:
    """Records one round (of every point in a group) that took `seconds`, then redraws."""
    self._round_s.append(seconds)
    self.rounds += 1
    self.points += points_done
    self.draw(label, groups_left)

  def text(self, label: str, groups_left: int = 0) -> str:
    """The part of the line after the bar: counts, `label`, elapsed time and ETA."""
    counts = (f'points {self.points}/{self.total_points}  rounds {self.rounds}/'
              f'{self.total_rounds}' if self.total_points > 1
              else f'{self.unit} {self.rounds}/{self.total_rounds}')
    return (f'{counts}  {label}  elapsed {_clock(time.perf_counter() - self._start)}  '
            f'eta {_clock(self.eta(groups_left))}')

  def draw(self, label: str, groups_left: int = 0) -> None:
    text = self.text(label, groups_left).replace('{', '{{').replace('}', '}}')
    if self._bar is not None:
      self._bar.bar_format = _BAR.format(width=self.width) + text
      self._bar.n = min(self.rounds, self._bar.total)
      self._bar.refresh()
      if self.rounds >= self.total_rounds:
        self.close()
    else:
      self.stream.write(tqdm.format_meter(
          min(self.rounds, self.total_rounds), max(self.total_rounds, 1),
          time.perf_counter() - self._start, prefix=self.desc, ascii=True,
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
