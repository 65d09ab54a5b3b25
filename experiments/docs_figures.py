"""The measured FedAR results quoted in README.md and docs/: each reruns its command(s) and
rewrites its text in the pages.

  python experiments/docs_figures.py --list
  python experiments/docs_figures.py --run=quickstart,sweep [--workdir=DIR]
  python experiments/docs_figures.py --check

A figure's text sits in a page between `<!-- figure:NAME -->` and `<!-- /figure -->`
(in a table cell or a sentence), and its command is written beside it (the same
table row or paragraph). `--run` runs the named figures' commands in fresh
workdirs under --workdir (default a temporary directory), computes the numbers
from the files they write (metrics.csv, summary.csv) and rewrites every span of
each figure, in every page; nothing else of the page changes. `--check` (what
tests/test_experiments.py runs) verifies that every span names a figure defined
here and that the figure's command appears in the span's paragraph or table row,
so no quoted number loses its command.

Engine-speed figures (benchmarks, timings) come from `experiments/benchmark.py`
sections, which print their own numbers with a baseline from the same run.
"""
import argparse
import csv
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Callable, NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ('README.md', 'docs/benchmarks.md', 'docs/sweeps.md', 'docs/defences.md',
         'docs/data.md', 'docs/scale.md', 'docs/privacy.md')
SPAN = re.compile(r'<!-- figure:([a-z0-9_]+) -->(.*?)<!-- /figure -->', re.S)


class Figure(NamedTuple):
  """commands: {label: the command as the page writes it (a {workdir} placeholder for
  its --workdir)}; text(dirs, seconds) -> the span's new text, from each command's
  workdir and wall seconds."""
  name: str
  commands: dict
  text: Callable


def _last_row(workdir: str) -> dict:
  with open(os.path.join(workdir, 'metrics.csv'), newline='') as f:
    return list(csv.DictReader(f))[-1]


def _summary(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'summary.csv'), newline='') as f:
    return list(csv.DictReader(f))


def _quickstart(dirs: dict, seconds: dict) -> str:
  smote, none = _last_row(dirs['smote']), _last_row(dirs['none'])
  return (f'G-mean {float(smote["gmean"]):.3f} (SMOTE) vs {float(none["gmean"]):.3f} (none); '
          f'minority recall {float(smote["recall_1"]):.3f} vs {float(none["recall_1"]):.3f}')


def sweep_headline(rows: list[dict], ir: float = 10.0) -> dict:
  """From summary.csv rows of a threshold x IR sweep: the final G-mean (mean over the
  thresholds) at the lowest and highest IR, and at IR `ir` the mean over thresholds below
  it (every client resamples) vs at or above it (none does)."""
  by_ir = {}
  for r in rows:
    by_ir.setdefault(float(r['imbalance_ratio']), []).append(
        (float(r['threshold']), float(r['gmean_mean'])))
  mean = lambda v: sum(v) / len(v)
  low, high = min(by_ir), max(by_ir)
  at = by_ir.get(ir, [])
  below = [g for t, g in at if t < ir]
  above = [g for t, g in at if t >= ir]
  return {'low_ir': low, 'high_ir': high, 'low': mean([g for _, g in by_ir[low]]),
          'high': mean([g for _, g in by_ir[high]]),
          'resampled': mean(below) if below else None, 'none': mean(above) if above else None}


def _sweep(dirs: dict, seconds: dict) -> str:
  h = sweep_headline(_summary(dirs['sweep']))
  wall = seconds['sweep']
  return (f'final G-mean {h["low"]:.3f} at IR {h["low_ir"]:g} down to {h["high"]:.3f} at IR '
          f'{h["high_ir"]:g}; resampling vs none at IR 10: {h["resampled"]:.3f} vs '
          f'{h["none"]:.3f}; {int(wall // 60)} min {int(wall % 60)} s on '
          f'{os.cpu_count()} cores')


FIGURES = {f.name: f for f in (
    Figure('quickstart', {
        'smote': 'fedar-run --flagfile=experiments/quickstart.flags --workdir={workdir}',
        'none': 'fedar-run --flagfile=experiments/quickstart.flags --resampler=none '
                '--workdir={workdir}'}, _quickstart),
    Figure('sweep', {
        'sweep': 'fedar-sweep --workdir={workdir} --thresholds=1,1.5,2,3,5,10 '
                 '--seeds=0,1,2,3,4 --imbalance_ratios=1,2,5,10,15,20'}, _sweep),
)}


def command_core(command: str) -> str:
  """The command as a page may write it: without its --workdir flag (pages name their
  own workdirs), the rest in order."""
  return ' '.join(w for w in command.split() if not w.startswith('--workdir='))


def _context(page: str, start: int) -> str:
  """The paragraph or table row around offset `start` of `page`."""
  begin = page.rfind('\n\n', 0, start)
  end = page.find('\n\n', start)
  block = page[begin + 1 if begin >= 0 else 0:end if end >= 0 else len(page)]
  if block.lstrip().startswith('|'):  # A table: the row alone.
    line_begin = page.rfind('\n', 0, start) + 1
    line_end = page.find('\n', start)
    return page[line_begin:line_end if line_end >= 0 else len(page)]
  return block


def _pages(root: str):
  """(relative path, absolute path, text) of every page of PAGES that exists under root."""
  for rel in PAGES:
    path = os.path.join(root, rel)
    if os.path.exists(path):
      with open(path, encoding='utf-8') as f:
        yield rel, path, f.read()


def spans(root: str = ROOT):
  """[(page, figure name, span text, context)] of every figure span in the pages."""
  return [(rel, m.group(1), m.group(2), _context(page, m.start()))
          for rel, _, page in _pages(root) for m in SPAN.finditer(page)]


def check(root: str = ROOT) -> list[str]:
  """Problems: spans naming no figure, or whose figure's commands are not beside them."""
  problems = []
  for rel, name, _, context in spans(root):
    if name not in FIGURES:
      problems.append(f'{rel}: figure:{name} is not defined in experiments/docs_figures.py')
      continue
    flat = command_core(context.replace('`', ' '))
    for label, command in FIGURES[name].commands.items():
      if command_core(command) not in flat:
        problems.append(f'{rel}: figure:{name} does not name its command ({label}: '
                        f'{command_core(command)})')
  return problems


def rewrite(name: str, text: str, root: str = ROOT) -> list[str]:
  """Replaces every span of figure `name` by `text`; returns the pages changed."""
  changed = []
  for rel, path, page in _pages(root):
    new = SPAN.sub(lambda m: (f'<!-- figure:{name} -->{text}<!-- /figure -->'
                              if m.group(1) == name else m.group(0)), page)
    if new != page:
      with open(path + '.tmp', 'w', encoding='utf-8') as f:
        f.write(new)
      os.replace(path + '.tmp', path)
      changed.append(rel)
  return changed


def run(figure: Figure, workdir: str) -> str:
  """Runs the figure's commands (each in workdir/NAME_LABEL) and returns its new text."""
  dirs, seconds = {}, {}
  for label, command in figure.commands.items():
    dirs[label] = os.path.join(workdir, f'{figure.name}_{label}')
    argv = shlex.split(command.format(workdir=dirs[label]))
    print('+', ' '.join(argv), flush=True)
    t = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True)
    seconds[label] = time.perf_counter() - t
  return figure.text(dirs, seconds)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--list', action='store_true', help='list the figures and commands')
  parser.add_argument('--run', default='', help='comma-separated figures to rerun and rewrite')
  parser.add_argument('--workdir', default='', help='where the commands write (default: a '
                      'temporary directory)')
  parser.add_argument('--check', action='store_true',
                      help='exit 1 if a figure span names no figure or not its command')
  args = parser.parse_args(argv)
  if args.list:
    for f in FIGURES.values():
      print(f.name)
      for label, command in f.commands.items():
        print(f'  {label}: {command}')
  if args.check:
    problems = check()
    for p in problems:
      print(p, file=sys.stderr)
    if problems:
      return 1
  names = [n for n in args.run.split(',') if n]
  unknown = [n for n in names if n not in FIGURES]
  if unknown:
    parser.error(f'--run: unknown figure(s) {", ".join(unknown)}; known: {", ".join(FIGURES)}')
  with tempfile.TemporaryDirectory() as tmp:
    for name in names:
      text = run(FIGURES[name], args.workdir or tmp)
      pages = rewrite(name, text)
      print(f'{name}: {text}  ({", ".join(pages) or "no page quotes it"})', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
