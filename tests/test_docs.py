"""The front door stays short and every relative link in README.md and docs/ resolves."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))


def test_readme_is_at_most_10_kb():
  assert (ROOT / 'README.md').stat().st_size <= 10 * 1024


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_relative_links_exist(page):
  text = re.sub(r'```.*?```', '', page.read_text(), flags=re.S)  # Links, not code.
  for target in re.findall(r'\]\(([^)\s]+)\)', text):
    if re.match(r'[a-z]+:', target) or target.startswith('#'):
      continue
    path = (page.parent / target.split('#')[0]).resolve()
    assert path.exists(), f'{page.name}: {target}'
