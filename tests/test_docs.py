"""The front door stays short, and every relative link in README.md and docs/*.md
points to an existing file (and, for a Markdown target, an existing heading)."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = ([ROOT / 'README.md', ROOT / 'experiments' / 'tpu' / 'README.md']
         + sorted((ROOT / 'docs').glob('*.md')))


def anchors(path: pathlib.Path) -> set[str]:
  """GitHub's heading anchors of a Markdown file (duplicates get -1, -2, ...)."""
  seen, out = {}, set()
  text = re.sub(r'```.*?```', '', path.read_text(), flags=re.S)
  for heading in re.findall(r'^#{1,6} (.+)$', text, flags=re.M):
    slug = re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    out.add(slug if n == 0 else f'{slug}-{n}')
  return out


def test_readme_is_at_most_10_kb():
  assert (ROOT / 'README.md').stat().st_size <= 10 * 1024


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_exist(page):
  text = re.sub(r'```.*?```', '', page.read_text(), flags=re.S)  # Links, not code.
  for target in re.findall(r'\]\(([^)\s]+)\)', text):
    if re.match(r'[a-z]+:', target):
      continue
    file, _, anchor = target.partition('#')
    path = (page.parent / file).resolve() if file else page
    assert path.exists(), f'{page.name}: {target}'
    if anchor and path.suffix == '.md':
      assert anchor in anchors(path), f'{page.name}: {target}: no such heading'
