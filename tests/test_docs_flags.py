"""docs/flags.md is what `python docs/generate.py` generates from the code."""
import importlib.util
import pathlib

_SPEC = importlib.util.spec_from_file_location(
    'docs_generate', pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'generate.py')
docs_flags = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(docs_flags)


def test_flags_doc_is_current():
  current = pathlib.Path(docs_flags.PATH).read_text()
  assert current == docs_flags.render(), (
      'docs/flags.md is stale: run python docs/generate.py')


def test_flags_doc_lists_every_flag():
  import dataclasses
  from fedar_jax.config import RunConfig
  from fedar_jax.sweep_axes import SWEEP_FLAGS
  text = docs_flags.render()
  for name in [f.name for f in dataclasses.fields(RunConfig)] + list(SWEEP_FLAGS) + ['workdir']:
    assert f'| `--{name}` |' in text, name


def test_help_lists_the_run_flags_under_their_groups():
  import sys
  from fedar_jax import cli
  from fedar_jax import config
  from fedar_jax import main  # noqa: F401  Defines the run flags.
  text = cli.help_text(sys.modules['fedar_jax.main'])
  headings = [text.index(f'\n{title} flags (') for title in config.GROUPS]
  assert headings == sorted(headings)
  for title, group in config.groups():
    section = text[text.index(f'\n{title} flags ('):].split('\n\n', 1)[0]
    assert [line.split(':')[0].strip() for line in section.splitlines()[1:]
            if line.startswith('  --')] == [
                f'--[no]{f.name}' if f.type in (bool, 'bool') else f'--{f.name}' for f in group]


def test_help_into_a_closed_pipe_exits_quietly():
  import subprocess
  import sys
  for module in ('fedar_jax.main', 'fedar_jax.sweep', 'fedar_jax.report'):
    proc = subprocess.run(f'{sys.executable} -m {module} --help | head -1', shell=True,
                          cwd=pathlib.Path(docs_flags.PATH).parents[1], capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.startswith(('Command line', 'Reports')) and not proc.stderr, (
        module, proc.stderr[-2000:])


def test_defences_methods_table_is_current_and_lists_every_registered_method():
  from fedar_jax.methods import registry
  current = pathlib.Path(docs_flags.DEFENCES_PATH).read_text()
  assert current == docs_flags.splice_methods(current), (
      'docs/defences.md is stale: run python docs/generate.py')
  table = docs_flags.render_methods()
  for kind in docs_flags.METHOD_KINDS:
    for name in registry.names(kind):
      assert f'| `--{registry.KINDS[kind]}={name}` |' in table, name
  for p in registry.params():
    assert f'`--{p.name}` ({p.default:g}; {p.bound.requirement()})' in table, p.name
