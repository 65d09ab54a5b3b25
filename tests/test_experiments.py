"""experiments/: one workload definition; scripts import the installed package only."""
import ast
import importlib
import importlib.util
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / 'experiments'


def _script(name: str):
  """experiments/NAME.py imported as a module."""
  spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _workload():
  return _script('workload')


def test_scripts_import_nothing_from_tests_nor_edit_sys_path():
  offenders = []
  for path in sorted(EXPERIMENTS.rglob('*.py')):
    text = path.read_text()
    if re.search(r'^\s*(from tests\b|import tests\b)', text, re.M) or 'sys.path' in text:
      offenders.append(path.name)
  assert not offenders


def _package_names(tree: ast.AST) -> dict:
  """{name: fedar_jax module} of a script's `from fedar_jax... import M` / `import fedar_jax.M`
  lines that name modules."""
  names = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('fedar_jax'):
      for alias in node.names:
        try:
          names[alias.asname or alias.name] = importlib.import_module(
              f'{node.module}.{alias.name}')
        except ModuleNotFoundError:  # A class or function, not a module.
          pass
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith('fedar_jax') and alias.asname:
          names[alias.asname] = importlib.import_module(alias.name)
  return names


def test_scripts_use_only_what_the_package_defines():
  """Every `module.name` an experiments/ script reads from a fedar_jax module exists (the
  scripts run on lent devices, where a renamed function would cost the device's time)."""
  missing = []
  for path in sorted(EXPERIMENTS.rglob('*.py')):
    tree = ast.parse(path.read_text())
    names = _package_names(tree)
    missing += [f'{path.name}:{node.lineno} {node.value.id}.{node.attr}'
                for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in names and not hasattr(names[node.value.id], node.attr)]
  assert not missing


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


def _docs_figures():
  return _script('docs_figures')


def test_every_quoted_result_names_its_command():
  figures = _docs_figures()
  assert figures.spans(), 'no figure spans found in the pages'
  assert figures.check() == []


def test_every_benchmark_row_names_a_command():
  rows, command_col = [], None
  for line in (ROOT / 'docs' / 'benchmarks.md').read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')] if line.startswith('|') else None
    if cells is None:
      command_col = None
    elif 'command' in cells and command_col is None:
      command_col = cells.index('command')
    elif command_col is not None and not set(cells[0]) <= set('-: '):
      rows.append(cells)
      assert '`' in cells[command_col], f'no command for: {cells[0]}'
  assert len(rows) > 10


def test_a_span_without_its_command_is_caught_and_rewrite_touches_only_spans(tmp_path):
  figures = _docs_figures()
  (tmp_path / 'docs').mkdir()
  row = '| quickstart | `{}` | <!-- figure:quickstart -->G-mean 0.1<!-- /figure --> |\n'
  page = tmp_path / 'docs' / 'benchmarks.md'
  page.write_text('# B\n\n' + row.format('fedar-run --flagfile=experiments/quickstart.flags'))
  problems = figures.check(str(tmp_path))
  assert len(problems) == 1 and '--resampler=none' in problems[0]
  (tmp_path / 'README.md').write_text('x <!-- figure:nosuch -->1<!-- /figure -->\n')
  assert any('figure:nosuch is not defined' in p for p in figures.check(str(tmp_path)))
  assert figures.rewrite('quickstart', 'G-mean 0.9', str(tmp_path)) == ['docs/benchmarks.md']
  assert page.read_text() == '# B\n\n' + row.format(
      'fedar-run --flagfile=experiments/quickstart.flags').replace('G-mean 0.1', 'G-mean 0.9')


def test_sweep_headline_from_summary_rows():
  figures = _docs_figures()
  rows = [{'imbalance_ratio': ir, 'threshold': t, 'gmean_mean': g} for ir, t, g in [
      ('1', '1.5', '0.9'), ('1', '10', '0.8'), ('10', '1.5', '0.7'), ('10', '5', '0.6'),
      ('10', '10', '0.5'), ('20', '10', '0.4')]]
  h = figures.sweep_headline(rows)
  assert (h['low_ir'], h['high_ir']) == (1.0, 20.0)
  assert abs(h['low'] - 0.85) < 1e-12 and abs(h['high'] - 0.4) < 1e-12
  assert abs(h['resampled'] - 0.65) < 1e-12 and h['none'] == 0.5


def test_hostile_check_table_classifier_and_one_refusal(capsys):
  check = _script('hostile_check')
  names = [c.name for c in check.CASES]
  assert len(names) == len(set(names)) and set(check.QUICK) <= set(names)
  assert {c.expect for c in check.CASES} == {'refused', 'ran', 'signal', 'fault'}
  assert all(c.fragment for c in check.CASES if c.expect in ('refused', 'fault'))
  case = check.CASES[0]
  progress = 'loading data, building the model: 1.0s\nrun 100%|##| round 2/2\n'
  assert check.classify(1, progress + 'error: W: disk full', False, case)[0] == 'fault'
  assert check.classify(1, 'E 08:33:14 [thread] failed\nerror: W: disk full', False,
                        case)[0] == 'noise'
  assert check.classify(2, 'error: --x: bad\nerror: again', False, case)[0] == 'noise'
  assert check.classify(0, '', True, case)[0] == 'hang'
  assert check.main(['--quick', '--cases=trim_fraction']) == 0
  assert 'refused 1' in capsys.readouterr().out


def test_data_dtype_gmean_names_the_varying_setting_and_refuses_a_bad_file(tmp_path, capsys):
  script = _script('data_dtype_gmean')
  header = 'imbalance_ratio,resampler,threshold,n_seeds,gmean_mean,gmean_std\n'
  a, b = tmp_path / 'a.csv', tmp_path / 'b.csv'
  a.write_text(header + '10,smote,1,1,0.5,\n10,smote,2,1,0.6,\n')
  b.write_text(header + '10,smote,1,1,0.5,\n10,smote,2,1,0.7,\n')
  report = script.compare(str(a), str(b))
  assert report.startswith('2 points') and "'threshold': '2'" in report
  assert report.endswith('1 points differ')
  (tmp_path / 'c.csv').write_text('x,y\n1,2\n')
  assert script.main([str(a), str(tmp_path / 'c.csv')]) == 2
  assert capsys.readouterr().err.count('\n') == 1
