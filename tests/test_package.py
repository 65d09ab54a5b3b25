"""Packaging: pyproject.toml agrees with requirements.txt, and an install from it
provides the console scripts, which run `--help` outside the repository."""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _pins(lines) -> set[str]:
  return {l.split('#')[0].strip().lower() for l in lines if re.match(r'^[A-Za-z]', l.strip())}


def test_pyproject_pins_are_requirements_txt():
  project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
  extras = project['optional-dependencies']
  declared = _pins(project['dependencies'] + extras['test'])
  assert declared == _pins((ROOT / 'requirements.txt').read_text().splitlines())
  assert all('==' in p for p in declared)
  assert _pins(extras['plan']) <= _pins(extras['test'])  # CI exercises the plan.


def test_install_provides_console_scripts(tmp_path):
  """`pip install .` of a copy of the project into a fresh venv without network: the
  venv sees this interpreter's site-packages (pip, setuptools, the runtime
  dependencies) through a .pth, and pip installs only the project (--no-deps,
  --ignore-installed, no build isolation). The scripts then run `--help` from a
  directory outside the repository and import the installed copy."""
  src = tmp_path / 'src'
  src.mkdir()
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(ROOT / name, src / name)
  shutil.copytree(ROOT / 'fedar_jax', src / 'fedar_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True,
                 timeout=120)
  python = str(venv / 'bin' / 'python')
  site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
                        capture_output=True, text=True, check=True).stdout.strip()
  (pathlib.Path(site) / 'parent_env.pth').write_text(sysconfig.get_path('purelib') + '\n')
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PIP_USER')}
  proc = subprocess.run([python, '-m', 'pip', 'install', '-q', '--no-deps', '--no-index',
                         '--no-build-isolation', '--ignore-installed', str(src)],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  where = subprocess.run([python, '-c', 'import fedar_jax; print(fedar_jax.__file__)'],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
  assert where.stdout.strip().startswith(site), where.stdout + where.stderr
  for script, expect in (('fedar-run', '--workdir'), ('fedar-sweep', '--thresholds'),
                         ('fedar-report', '--workdir'), ('fedar-plan', '--target'),
                         ('fedar-population', '--population_dtype')):
    proc = subprocess.run([str(venv / 'bin' / script), '--help'], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f'{script}: {proc.stderr[-2000:]}'
    assert expect in proc.stdout, f'{script}: {proc.stdout[-2000:]}'


def test_ci_runs_the_readme_test_command():
  readme = (ROOT / 'README.md').read_text()
  command = readme.split('Run the tests:', 1)[1].split('```')[1].strip()
  assert command.endswith('python -m pytest -q -n 2 --dist loadfile tests')
  assert 'pip install' in command
  assert command in (ROOT / '.ci' / 'run').read_text().splitlines()


def test_importing_a_module_has_no_side_effects_beyond_cli_flag_definitions():
  """Module bodies hold definitions only; the command-line modules may define absl flags."""
  import ast
  import pathlib
  root = pathlib.Path(__file__).resolve().parents[1] / 'fedar_jax'
  calls = []
  for path in sorted(root.rglob('*.py')):
    for node in ast.parse(path.read_text()).body:
      stmts = node.body if isinstance(node, ast.For) else [node]
      for stmt in stmts:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
          text = ast.unparse(stmt.value.func)
          if not (path.stem in ('main', 'sweep', 'report', 'plan', 'population') and
                  (text.startswith('flags.DEFINE_') or text == 'cli.define_config_flags')):
            calls.append(f'{path.relative_to(root)}:{stmt.lineno} {text}')
  assert not calls, calls


def test_no_import_cycle():
  """Between any two modules, packages' own included. Imports inside functions count too:
  a lazy import hides a cycle, it does not remove it."""
  import ast
  root = ROOT / 'fedar_jax'
  names = {'.'.join(p.relative_to(ROOT).with_suffix('').parts).removesuffix('.__init__'): p
           for p in root.rglob('*.py')}
  graph = {}
  for name, path in names.items():
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('fedar_jax'):
        deps |= {f'{node.module}.{a.name}' if f'{node.module}.{a.name}' in names
                 else node.module for a in node.names}
      elif isinstance(node, ast.Import):
        deps |= {a.name for a in node.names}
    graph[name] = {d for d in deps if d in names and d != name}

  def reaches(start, goal, seen):
    for d in graph[start] - seen:
      seen.add(d)
      if d == goal or reaches(d, goal, seen):
        return True
    return False
  cycles = [n for n in graph if reaches(n, n, set())]
  assert not cycles, cycles


def test_importing_checkpoint_leaves_the_absl_logger_alone():
  code = ('from absl import logging; import fedar_jax.checkpoint as c; '
          'assert not logging.get_absl_logger().filters; c.quiet_orbax_logs(); '
          'c.quiet_orbax_logs(); assert len(logging.get_absl_logger().filters) == 1')
  subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)
