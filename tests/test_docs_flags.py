"""docs/flags.md is what `python -m fedar_jax.docs_flags` generates from the code."""
import pathlib

from fedar_jax import docs_flags


def test_flags_doc_is_current():
  current = pathlib.Path(docs_flags.PATH).read_text()
  assert current == docs_flags.render(), (
      'docs/flags.md is stale: run python -m fedar_jax.docs_flags')


def test_flags_doc_lists_every_flag():
  import dataclasses
  from fedar_jax.config import RunConfig
  from fedar_jax.sweep_axes import SWEEP_FLAGS
  text = docs_flags.render()
  for name in [f.name for f in dataclasses.fields(RunConfig)] + list(SWEEP_FLAGS) + ['workdir']:
    assert f'| `--{name}` |' in text, name
