"""XLA option variants on the paper workload, one process each: compile and run seconds.

  python experiments/xla_variants.py                     # an accelerator: C = 1,000
  python experiments/xla_variants.py --quick             # this CPU: proves the script works
  python experiments/xla_variants.py --variants=default,no_triton_gemm

Each variant runs `experiments/compile_breakdown.py --programs=prepare,block_once`
(SMOTE, `--resample_every=once`: the pre-training step and the block of rounds) in
its own process with XLA_FLAGS set, so XLA's in-process autotuning results never
carry from one variant to the next. One JSON line per (variant, program) with
`xla_compile_s`, `round_s` (block of rounds, fastest of --calls calls) or `run_s`
(the pre-training step), then one summary line per variant with the ratios to
`default` measured in the same run, then 'chosen': the variant with the smallest
compile (both programs) whose round is within --round_tolerance of default's. GPU options are ignored by the CPU (the quick
mode only checks the plumbing). `default` also writes XLA's chosen GEMM tilings to
--autotune_dump (when given).
"""
import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Triton GEMM tilings for --xla_gpu_override_gemm_autotuner (AutotuneResult.TritonGemmKey
# textproto; commas separate the fields so the value is one XLA_FLAGS token).
TILE_SMALL = 'block_m:32,block_n:16,block_k:32,split_k:1,num_stages:1,num_warps:2,num_ctas:1'
TILE_MID = 'block_m:64,block_n:16,block_k:64,split_k:1,num_stages:2,num_warps:4,num_ctas:1'

CM = '--xla_gpu_experimental_cost_model_gemm_tiling_options='  # XLA's GEMM cost model
TRITON_ONLY = '--xla_gpu_experimental_autotune_backends=triton'
VARIANTS = {
    'default': '',
    'autotune0': '--xla_gpu_autotune_level=0',
    'no_triton_gemm': '--xla_gpu_enable_triton_gemm=false',
    # Fewer candidates to compile and time per GEMM fusion:
    'triton_only': TRITON_ONLY,                           # no cuBLAS/cuDNN candidates
    'max_solutions1': '--xla_gpu_autotune_max_solutions=1',  # one GEMM-library solution
    'cm_top1': f'{CM}top=1,top_from_default=1',           # cost model's best default tiling
    'cm_top2': f'{CM}top=2,top_from_default=1',
    'cm_top4': f'{CM}top=4,top_from_default=1',
    'cm_top2_all': f'{CM}top=2',                          # ... of the exhaustive set
    'cm_filter10': f'{CM}filter=0.1',                     # default set within 10% of the best
    'cm_top2_triton_only': f'{CM}top=2,top_from_default=1 {TRITON_ONLY}',
    # One fixed tiling, no autotuning:
    'override_small': f'--xla_gpu_override_gemm_autotuner={TILE_SMALL}',
    'override_mid': f'--xla_gpu_override_gemm_autotuner={TILE_MID}',
    # The compile outside autotuning:
    'llvm_parallel': '--xla_gpu_enable_llvm_module_compilation_parallelism=true',
}


def run_variant(label: str, flags: str, args) -> list[dict]:
  env = dict(os.environ)
  if label == 'default' and args.autotune_dump:
    flags = f'{flags} --xla_gpu_dump_autotune_results_to={args.autotune_dump}'.strip()
  env['XLA_FLAGS'] = f'{env.get("XLA_FLAGS", "")} {flags}'.strip()
  cmd = [sys.executable, os.path.join(REPO, 'experiments', 'compile_breakdown.py'),
         f'--resamplers={args.resampler}', f'--clients={args.clients}', f'--block={args.block}',
         '--no_parts', '--programs=prepare,block_once', f'--calls={args.calls}']
  try:
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=args.timeout)
    rc, out, err = p.returncode, p.stdout, p.stderr
  except subprocess.TimeoutExpired as e:
    rc, out = 124, e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or '')
    err = 'timed out'
  records = []
  for line in out.splitlines():
    if line.startswith('{'):
      records.append({'variant': label, 'xla_flags': flags, **json.loads(line)})
  if rc:
    records.append({'variant': label, 'xla_flags': flags, 'rc': rc,
                    'error': err.strip()[-300:]})
  return records


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--quick', action='store_true', help='CPU: 20 clients, 2 variants')
  parser.add_argument('--variants', default='', help='comma list of %s' % ', '.join(VARIANTS))
  parser.add_argument('--resampler', default='smote')
  parser.add_argument('--clients', type=int, default=1000)
  parser.add_argument('--block', type=int, default=10)
  parser.add_argument('--calls', type=int, default=5)
  parser.add_argument('--timeout', type=float, default=120, help='seconds per variant')
  parser.add_argument('--autotune_dump', default='', help="file for default's GEMM tilings")
  parser.add_argument('--round_tolerance', type=float, default=0.03,
                      help="'chosen': the fastest compile whose round is within this of default's")
  parser.add_argument('--chosen_file', default='', help="write the chosen variant's XLA_FLAGS here")
  args = parser.parse_args()
  names = args.variants.split(',') if args.variants else list(VARIANTS)
  if args.quick:
    args.clients, args.calls = 20, 2
    names = names if args.variants else ['default', 'no_triton_gemm']
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    parser.error(f'--variants: unknown {unknown}; known: {", ".join(VARIANTS)}')
  found = {}
  for label in names:
    for record in run_variant(label, VARIANTS[label], args):
      print(json.dumps(record), flush=True)
      if 'program' in record:
        found.setdefault(label, {})[record['program']] = record
  base = found.get('default', {})
  for label, programs in found.items():
    summary = {'summary': label}
    for program, record in programs.items():
      summary[f'{program}_compile_s'] = record['xla_compile_s']
      speed = 'round_s' if 'round_s' in record else 'run_s'
      summary[f'{program}_{speed}'] = record[speed]
      if program in base:
        summary[f'{program}_compile_x'] = round(record['xla_compile_s'] /
                                                base[program]['xla_compile_s'], 3)
        summary[f'{program}_{speed}_x'] = round(record[speed] / base[program][speed], 3)
    print(json.dumps(summary), flush=True)
  if 'default' in found and 'block_once' in base:
    limit = (1 + args.round_tolerance) * base['block_once']['round_s']
    ok = [label for label, programs in found.items()
          if 'block_once' in programs and 'prepare' in programs
          and programs['block_once']['round_s'] <= limit]
    best = min(ok, key=lambda label: found[label]['block_once']['xla_compile_s'] +
               found[label]['prepare']['xla_compile_s'])
    print(json.dumps({'chosen': best, 'xla_flags': VARIANTS[best],
                      'round_tolerance': args.round_tolerance}), flush=True)
    if args.chosen_file:
      with open(args.chosen_file, 'w') as f:
        f.write(VARIANTS[best])


if __name__ == '__main__':
  main()
