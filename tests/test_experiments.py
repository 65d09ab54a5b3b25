"""experiments/: one workload definition; scripts import the installed package only."""
import importlib.util
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / 'experiments'


def _workload():
  spec = importlib.util.spec_from_file_location('workload', EXPERIMENTS / 'workload.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_scripts_import_nothing_from_tests_nor_edit_sys_path():
  offenders = []
  for path in sorted(EXPERIMENTS.rglob('*.py')):
    text = path.read_text()
    if re.search(r'^\s*(from tests\b|import tests\b)', text, re.M) or 'sys.path' in text:
      offenders.append(path.name)
  assert not offenders


def test_paper_shapes_are_defined_once():
  """The paper's client shape (220 x 432) appears only in workload.py."""
  shape = re.compile(r'samples_per_client\W+220\b|\b220, 432\b')
  assert [p.name for p in sorted(EXPERIMENTS.rglob('*.py')) if shape.search(p.read_text())] \
      == ['workload.py']


def test_workload_is_a_valid_config_and_flags():
  workload = _workload()
  cfg = workload.config(num_clients=7)
  assert (cfg.num_clients, cfg.samples_per_client, cfg.feature_dim, cfg.hidden) \
      == (7, 220, 432, (10,))
  assert '--hidden=10' in workload.flags() and '--feature_dim=32' in workload.flags(quick=True)
