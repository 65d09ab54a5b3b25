"""A text progress bar over sweep points and rounds, with an ETA, on stderr."""
import statistics
import sys
import time


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class Progress:
  """Counts rounds of groups of sweep points; the ETA is the median time per round
  (this invocation, compilation excluded) times the rounds left, plus the mean
  compile time per group times the groups left to compile.

  On a terminal the bar redraws in place; otherwise (logs, pipes) it prints a line
  per update.
  """

  def __init__(self, total_rounds: int, total_points: int, stream=None, width: int = 24):
    self.total_rounds, self.total_points = total_rounds, total_points
    self.stream = stream or sys.stderr
    self.width = width
    self.rounds = self.points = 0
    self._round_s: list[float] = []
    self._compile_s: list[float] = []
    self._tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
    self._start = time.perf_counter()

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

  def draw(self, label: str, groups_left: int = 0) -> None:
    frac = self.rounds / max(self.total_rounds, 1)
    filled = int(round(frac * self.width))
    line = (f'sweep [{"#" * filled}{"." * (self.width - filled)}] {100 * frac:3.0f}%  '
            f'points {self.points}/{self.total_points}  rounds {self.rounds}/{self.total_rounds}  '
            f'{label}  elapsed {_clock(time.perf_counter() - self._start)}  '
            f'eta {_clock(self.eta(groups_left))}')
    if self._tty:
      self.stream.write('\r' + line + ('\n' if self.rounds >= self.total_rounds else ''))
    else:
      self.stream.write(line + '\n')
    self.stream.flush()
