"""--compilation_cache_dir: on by default in a per-user directory, reused by an identical rerun, off when empty."""
import json
import os
import subprocess
import sys

from tests.test_main import ROOT, SMALL


def _run(workdir, xdg, *extra):
  env = {**os.environ, 'XDG_CACHE_HOME': str(xdg)}
  proc = subprocess.run([sys.executable, '-m', 'fedar_jax.main', f'--workdir={workdir}', *SMALL,
                         *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  return json.loads((workdir / 'summary.json').read_text())


def test_identical_rerun_loads_its_programs_from_the_default_cache(tmp_path):
  first = _run(tmp_path / 'a', tmp_path / 'xdg')
  cache = tmp_path / 'xdg' / 'fedar_jax' / 'jax'
  assert cache.is_dir() and os.listdir(cache)
  again = _run(tmp_path / 'b', tmp_path / 'xdg')  # A new workdir: nothing to resume.
  assert again['final'] == first['final']
  assert again['compile_s'] < 0.5 * first['compile_s'], (again['compile_s'], first['compile_s'])
  _run(tmp_path / 'c', tmp_path / 'xdg_off', '--compilation_cache_dir=')
  assert not (tmp_path / 'xdg_off' / 'fedar_jax').exists()


def test_fast_compile_turns_off_triton_gemm_on_gpu_only(monkeypatch):
  import jax
  from fedar_jax import programs
  monkeypatch.setattr(jax, 'default_backend', lambda: 'cpu')
  assert programs.compiler_options(True) == programs.compiler_options(False) == {
      'xla_cpu_use_fusion_emitters': False}
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert programs.compiler_options(False) == {}
  assert programs.compiler_options(True) == {'xla_gpu_enable_triton_gemm': False}


def test_pretraining_step_options_per_platform(monkeypatch):
  import jax
  from fedar_jax import programs
  monkeypatch.setattr(jax, 'default_backend', lambda: 'cpu')
  assert programs.once_compiler_options() == {'xla_backend_optimization_level': 1}
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert programs.once_compiler_options() == {'xla_gpu_enable_triton_gemm': False}
  monkeypatch.setattr(jax, 'default_backend', lambda: 'tpu')
  assert programs.once_compiler_options() == {}
