"""The figures' shared style: palette, line styles, resolution and a headless pyplot.

The palette is Okabe and Ito's colour-blind-safe set without its yellow (too
faint on white). `line_style(i)` cycles colour, marker and dash with different
periods and staggers the markers, so curves that coincide (tied thresholds)
still show each of their markers.
"""
DPI = 150
# Okabe-Ito: blue, vermillion, bluish green, reddish purple, sky blue, orange, black.
PALETTE = ('#0072B2', '#D55E00', '#009E73', '#CC79A7', '#56B4E9', '#E69F00', '#000000')
MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '*')
DASHES = ('-', '--', ':', '-.')
BAND_ALPHA = 0.18
# A sweep figure's lines: the baseline in black, the others in the palette's other colours
# (distinct for up to 6 lines; beyond, the dash and marker tell them apart).
LINE_COLOURS = PALETTE[:-1]
BASELINE = {'color': '#000000', 'marker': 'o', 'linestyle': '-', 'linewidth': 2.8,
            'markersize': 6, 'zorder': 10}


def line_style(i: int, n: int = 1, points: int = 0) -> dict:
  """Matplotlib keyword arguments for the i-th of n lines of `points` points each.

  Markers of line i sit at every n-th point starting at point i (for points > 2n),
  so n coinciding lines show n disjoint marker sets; with fewer points, later
  lines get larger markers, to peek out from under earlier ones (draw line i
  above line i + 1).
  """
  style = {'color': PALETTE[i % len(PALETTE)], 'marker': MARKERS[i % len(MARKERS)],
           'linestyle': DASHES[i % len(DASHES)], 'markersize': 5, 'linewidth': 1.6}
  if points > 2 * n:
    style['markevery'] = (i % n, n)
  elif n > 1:
    style['markersize'] = 5 + 2.5 * min(i, 4)
  return style


def series_style(i: int, is_baseline: bool = False) -> dict:
  """Matplotlib keyword arguments for the i-th non-baseline line of a sweep figure (or the
  baseline's: black, thicker, on top): colour i of LINE_COLOURS, marker i, solid for the
  first len(LINE_COLOURS) lines, then dashed, dotted, ...; earlier lines are drawn above
  later ones, whose larger markers peek out where lines coincide at a point."""
  if is_baseline:
    return dict(BASELINE)
  return {'color': LINE_COLOURS[i % len(LINE_COLOURS)], 'marker': MARKERS[i % len(MARKERS)],
          'linestyle': DASHES[(i // len(LINE_COLOURS)) % len(DASHES)],
          'markersize': 5 + 0.75 * min(i, 4), 'linewidth': 1.6, 'zorder': 9 - min(i, 6)}


def band(ax, x, mean, half, colour):
  """The 95% CI band mean ± half (float arrays, nan: none) around a line, clipped to
  [0, 1] (G-mean, recall)."""
  import numpy as np
  if np.isfinite(half).any():
    ax.fill_between(x, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1), color=colour,
                    alpha=BAND_ALPHA, linewidth=0)


def figure(rows: int, cols: int, width: float, height: float, sharey: bool = True):
  """(fig, axes[rows, cols]) on a constrained layout (titles, legends outside the axes and
  the figure title do not overlap); unused panels are hidden by the caller."""
  return pyplot().subplots(rows, cols, figsize=(width, height), squeeze=False, sharey=sharey,
                           layout='constrained')


def save_outside(fig, path: str) -> str:
  """Saves a `figure()` at DPI with its outside legend, and closes it; returns `path`."""
  fig.savefig(path, dpi=DPI, bbox_inches='tight')
  pyplot().close(fig)
  return path


def pyplot():
  """matplotlib.pyplot on the non-interactive Agg backend."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  return plt


def save(fig, path: str) -> str:
  """Saves `fig` to `path` at DPI (tight layout) and closes it; returns `path`."""
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)
  pyplot().close(fig)
  return path
