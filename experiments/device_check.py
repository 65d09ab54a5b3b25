"""Whole-process figures on the machine at hand: one JSON line per measurement.

  python experiments/device_check.py            # full sizes (an accelerator; <= 5 minutes
                                                # and the local_kernel section's 4 commands)
  python experiments/device_check.py --quick    # small sizes (this CPU; about a minute)

Every figure comes from the command line a user runs (`python -m fedar_jax.main`,
`python -m fedar_jax.sweep`) in a subprocess, so it includes start-up, data
generation and compilation:
  main        C = 100 / 1,000 / 10,000 clients (paper workload: 220 rows x 432 dims,
              MLP 10, 5 local epochs, batch 32, SMOTE): whole-process wall seconds and
              summary.json's compile_s and round_s;
  rerun       the C = 100 command again in a new workdir: with the persistent
              compilation cache it starts without compiling (compile_s, wall);
  sweep30     6 thresholds x 5 seeds, 100 clients, 20 rounds, one command;
  xla_options the C = 1,000 command (quick: 40) under each XLA_FLAGS variant of
              XLA_VARIANTS (GEMM autotuning level, Triton GEMM fusions), compilation
              cache off: compile_s and round_s of each, then the variant with the
              smallest compile whose round is within 5% of the default's ('chosen');
  imr_preset  experiments/paper/imr_study.flags (quick: imr_study_cpu.flags) under a
              time limit, with the chosen variant's XLA_FLAGS when xla_options ran:
              wall seconds, rows written, and whether it finished;
  data_dtype  the C = 1,000 and 10,000 commands (quick: 40, 100) with
              --data_dtype=bfloat16 beside the same commands in float32 (main's
              records when main ran): compile_s, round_s, final G-mean, and the
              bfloat16/float32 round ratio;
  plan        the plan of the `local` target against the same run measured here
              (experiments/benchmark_plan.py: bytes per chip vs the device's
              peak_bytes_in_use, est_round_s vs the measured round, and their ratios);
  local_kernel  the C = 1,000 and 10,000 commands (quick: 40 and 100) with
              --local_kernel=xla and --local_kernel=pallas (the fused Pallas local-training
              kernel; Pallas interpret mode on a CPU): compile_s, round_s and the final
              G-mean of each, and the pallas/xla round-time ratio (each command stops
              after LOCAL_KERNEL_TIMEOUT_S, so a slow Triton compile cannot take the
              machine's time).
Each section runs in its own workdir under --root (default a new temporary directory)
with the compilation cache in --root/cache, so the first command of a run is cold.
--xla_flags adds XLA_FLAGS to every command (e.g. a variant chosen by
experiments/xla_variants.py); each record carries the flags it ran under.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import workload

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# XLA_FLAGS variants timed by the xla_options section (GPU options; the CPU ignores them).
XLA_VARIANTS = {
    'default': '',
    'autotune0': '--xla_gpu_autotune_level=0',
    'autotune1': '--xla_gpu_autotune_level=1',
    'no_triton_gemm': '--xla_gpu_enable_triton_gemm=false',
    'no_triton_gemm_autotune0': '--xla_gpu_enable_triton_gemm=false --xla_gpu_autotune_level=0',
}

# Seconds each command of the local_kernel section may run.
LOCAL_KERNEL_TIMEOUT_S = 240


def _run(module: str, args: list[str], timeout: float,
         xla_flags: str = '') -> tuple[float, int, str]:
  """Runs `python -m module args` (XLA_FLAGS extended by `xla_flags`); returns (wall
  seconds, exit status, stderr tail)."""
  env = dict(os.environ)
  if xla_flags:
    env['XLA_FLAGS'] = f'{env.get("XLA_FLAGS", "")} {xla_flags}'.strip()
  t = time.perf_counter()
  try:
    p = subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, capture_output=True,
                       text=True, timeout=timeout, env=env)
    rc, err = p.returncode, p.stderr
  except subprocess.TimeoutExpired as e:
    rc = 124
    err = e.stderr.decode(errors='replace') if isinstance(e.stderr, bytes) else (e.stderr or '')
  return time.perf_counter() - t, rc, err.strip()[-400:]


def _summary(workdir: str) -> dict:
  path = os.path.join(workdir, 'summary.json')
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    s = json.load(f)
  return {'compile_s': s.get('compile_s'), 'round_s': s.get('round_s'),
          'device': s.get('device'), 'final_gmean': s.get('final', {}).get('gmean')}


def _rows(path: str) -> int:
  if not os.path.exists(path):
    return 0
  with open(path, newline='') as f:
    return sum(1 for _ in csv.DictReader(f))


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--quick', action='store_true', help='small sizes for a CPU')
  parser.add_argument('--root', default='', help='directory for workdirs and the cache')
  parser.add_argument('--preset_timeout', type=float, default=0,
                      help='seconds the IMR preset may run (default 150; quick 120)')
  parser.add_argument('--sections',
                      default='main,rerun,sweep30,data_dtype,imr_preset,plan,local_kernel')
  parser.add_argument('--xla_flags', default='', help='XLA_FLAGS added to every command')
  args = parser.parse_args()
  root = args.root or tempfile.mkdtemp(prefix='fedar_device_check_')
  cache = f'--compilation_cache_dir={os.path.join(root, "cache")}'
  base = workload.flags(quick=args.quick)
  sizes = (10, 40, 100) if args.quick else (100, 1000, 10000)
  rounds = 5 if args.quick else 20
  sections = args.sections.split(',')
  xla = args.xla_flags

  def emit(record):
    print(json.dumps(record), flush=True)

  def main_run(section: str, c: int, extra: tuple = (), label: str = '') -> dict:
    workdir = os.path.join(root, f'{section}{label}_c{c}')
    r = rounds if c <= sizes[0] * 10 else 5
    wall, rc, err = _run('fedar_jax.main', [*base, f'--num_clients={c}', f'--rounds={r}',
                                            f'--workdir={workdir}', cache, *extra], 600, xla)
    record = {'section': section, 'clients': c, 'rounds': r, 'xla_flags': xla,
              'wall_s': round(wall, 2), 'rc': rc,
              **_summary(workdir), **({'error': err} if rc else {})}
    emit({**record, **({'flags': ' '.join(extra)} if extra else {})})
    return record

  float32_runs = {}
  if 'main' in sections:
    for c in sizes:
      float32_runs[c] = main_run('main', c)
  if 'data_dtype' in sections:
    for c in sizes[1:]:
      full = float32_runs.get(c) or main_run('data_dtype', c, ('--data_dtype=float32',),
                                             '_float32')
      half = main_run('data_dtype', c, ('--data_dtype=bfloat16',), '_bfloat16')
      if full['rc'] == half['rc'] == 0 and full.get('round_s') and half.get('round_s'):
        emit({'section': 'data_dtype', 'clients': c, 'xla_flags': xla,
              'float32_round_s': full['round_s'], 'bfloat16_round_s': half['round_s'],
              'round_ratio': round(half['round_s'] / full['round_s'], 3),
              'gmean_change': round(half['final_gmean'] - full['final_gmean'], 4)})
  if 'rerun' in sections:  # Its own cache: the first command compiles, the rerun loads.
    rerun_cache = f'--compilation_cache_dir={os.path.join(root, "cache_rerun")}'
    for label in ('first', 'rerun'):
      workdir = os.path.join(root, f'rerun_{label}')
      wall, rc, err = _run('fedar_jax.main', [*base, f'--num_clients={sizes[0]}',
                                              f'--rounds={rounds}', '--seed=7',
                                              f'--workdir={workdir}', rerun_cache], 600, xla)
      emit({'section': 'rerun', 'run': label, 'xla_flags': xla, 'clients': sizes[0],
            'wall_s': round(wall, 2),
            'rc': rc, **_summary(workdir), **({'error': err} if rc else {})})
  if 'sweep30' in sections:
    workdir = os.path.join(root, 'sweep30')
    c = sizes[0] if args.quick else 100
    wall, rc, err = _run('fedar_jax.sweep', [*base, f'--num_clients={c}', f'--rounds={rounds}',
                                             '--thresholds=1,1.5,2,3,5,10', '--seeds=0,1,2,3,4',
                                             f'--workdir={workdir}', cache], 600, xla)
    emit({'section': 'sweep30', 'xla_flags': xla, 'points': 30, 'clients': c,
          'rounds': rounds,
          'wall_s': round(wall, 2), 'rc': rc, 'rows': _rows(os.path.join(workdir, 'sweep.csv')),
          **({'error': err} if rc else {})})
  chosen = xla
  if 'xla_options' in sections:
    c = sizes[1]
    found = {}
    for label, flags in XLA_VARIANTS.items():
      workdir = os.path.join(root, f'xla_{label}')
      wall, rc, err = _run('fedar_jax.main', [*base, f'--num_clients={c}', '--rounds=10',
                                              f'--workdir={workdir}', '--compilation_cache_dir='],
                           600, f'{xla} {flags}'.strip())
      record = {'section': 'xla_options', 'variant': label, 'xla_flags': flags, 'clients': c,
                'wall_s': round(wall, 2), 'rc': rc, **_summary(workdir),
                **({'error': err} if rc else {})}
      emit(record)
      if rc == 0:
        found[label] = record
    if 'default' in found:
      limit = 1.05 * found['default']['round_s']
      ok = [r for r in found.values() if r['round_s'] <= limit]
      best = min(ok, key=lambda r: r['compile_s'])
      chosen = f"{xla} {best['xla_flags']}".strip()
      emit({'section': 'xla_options', 'chosen': best['variant'], 'xla_flags': chosen,
            'compile_s': best['compile_s'], 'round_s': best['round_s'],
            'default_compile_s': found['default']['compile_s'],
            'default_round_s': found['default']['round_s']})
  if 'imr_preset' in sections:
    name = 'imr_study_cpu.flags' if args.quick else 'imr_study.flags'
    flagfile = os.path.join(REPO, 'experiments', 'paper', name)
    workdir = os.path.join(root, 'imr_preset')
    limit = args.preset_timeout or (120 if args.quick else 150)
    if not os.path.exists(flagfile):
      emit({'section': 'imr_preset', 'error': f'{flagfile} does not exist'})
    else:
      wall, rc, err = _run('fedar_jax.sweep', [f'--flagfile={flagfile}', f'--workdir={workdir}',
                                               cache], limit, chosen)
      emit({'section': 'imr_preset', 'flagfile': name, 'xla_flags': chosen,
            'wall_s': round(wall, 2), 'rc': rc,
            'finished': rc == 0, 'timeout_s': limit,
            'rows': _rows(os.path.join(workdir, 'sweep.csv')),
            **({'error': err} if rc not in (0, 124) else {})})

  if 'plan' in sections:
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'experiments', 'benchmark.py'),
                           '--sections=plan', '--plan_targets=',
                           *(['--quick'] if args.quick else [])],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'XLA_FLAGS': xla} if xla else None)
    lines = [l for l in proc.stdout.splitlines() if l.startswith('{')]
    for line in lines:
      emit({**json.loads(line), 'section': 'plan', 'xla_flags': xla})
    if proc.returncode or not lines:
      emit({'section': 'plan', 'rc': proc.returncode, 'error': proc.stderr[-500:]})
  if 'local_kernel' in sections:
    for c in sizes[1:]:
      rounds_s = {}
      for kernel in ('xla', 'pallas'):
        workdir = os.path.join(root, f'local_kernel_{kernel}_c{c}')
        wall, rc, err = _run('fedar_jax.main', [*base, f'--num_clients={c}', '--rounds=5',
                                                f'--local_kernel={kernel}',
                                                f'--workdir={workdir}', cache],
                                     LOCAL_KERNEL_TIMEOUT_S, xla)
        record = {'section': 'local_kernel', 'local_kernel': kernel, 'clients': c,
                  'rounds': 5, 'xla_flags': xla, 'wall_s': round(wall, 2), 'rc': rc,
                  **_summary(workdir), **({'error': err} if rc else {})}
        emit(record)
        rounds_s[kernel] = record.get('round_s') if rc == 0 else None
      if all(rounds_s.values()):
        emit({'section': 'local_kernel', 'clients': c,
              'pallas_over_xla_round': round(rounds_s['pallas'] / rounds_s['xla'], 3)})


if __name__ == '__main__':
  main()
