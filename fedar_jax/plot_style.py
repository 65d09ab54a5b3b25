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
