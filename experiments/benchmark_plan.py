"""Section `plan`: plans checked against reality, and the paper presets planned for TPUs.

local  the paper workload (quick: its small shapes) at --plan_clients clients
       (default 1,000; quick 40), 5 rounds: measured on this machine
       (`loop.train_and_evaluate`: median round seconds; peak memory: the device's
       `peak_bytes_in_use` on a GPU/TPU, the process's peak RSS above its RSS before
       the run on a CPU), then planned for the `local` target (`planning.plan_study`);
       prints the plan's bytes per chip and est_round_s against them, and their ratios.
tpu    (not with --quick or --plan_targets=) each preset of --plan_presets planned
       for each topology of --plan_targets with `python -m fedar_jax.plan`: chips,
       processes, programs, the largest bytes per chip and its share of the HBM,
       the estimated study seconds, the compile seconds.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile

import workload

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_bytes() -> int:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def local(args) -> dict:
  import jax
  from fedar_jax import loop
  from fedar_jax import planning
  from fedar_jax import topology
  clients = args.plan_clients or (40 if args.quick else 1000)
  cfg = workload.config(args.quick, num_clients=clients, rounds=5, checkpoint_every=5)
  device = jax.devices()[0]
  before = _rss_bytes()
  with tempfile.TemporaryDirectory() as workdir:
    summary = loop.train_and_evaluate(cfg, workdir)
  if device.platform == 'cpu':
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    peak_kind = 'process peak RSS above the RSS before the run'
  else:
    peak = (device.memory_stats() or {}).get('peak_bytes_in_use')
    peak_kind = 'peak_bytes_in_use'
  plan = planning.plan_study(cfg, {}, topology.local_target())
  rounds = next(p for p in plan.programs if p.name.endswith('/rounds'))
  need = max(p.bytes_per_chip for p in plan.programs)
  ratio = lambda a, b: None if a is None or not b else round(a / b, 3)
  return {'part': 'local', 'device': loop.device_description(), 'clients': clients,
          'plan_bytes_per_chip': need, 'measured_peak_bytes': peak, 'peak_kind': peak_kind,
          'bytes_ratio_plan_over_measured': ratio(need, peak),
          'plan_est_round_s': rounds.est_s, 'measured_round_s': summary['round_s'],
          'round_ratio_plan_over_measured': ratio(rounds.est_s, summary['round_s']),
          'plan_flops_per_round': rounds.flops,
          'plan_compile_s': round(sum(p.compile_s for p in plan.programs), 2),
          'measured_compile_s': round(summary['compile_s'], 2)}


def tpu(preset: str, target: str) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'plan.json')
    proc = subprocess.run([sys.executable, '-m', 'fedar_jax.plan', f'--target={target}',
                           f'--flagfile={os.path.join(REPO, "experiments", "paper", preset)}',
                           f'--plan_json={path}'], cwd=REPO, capture_output=True, text=True)
    if not os.path.exists(path):
      return {'part': 'tpu', 'preset': preset, 'target': target, 'rc': proc.returncode,
              'error': proc.stderr.strip().splitlines()[-1:]}
    with open(path) as f:
      plan = json.load(f)
  programs = plan['programs']
  worst = max(programs, key=lambda p: p['bytes_per_chip'])
  return {'part': 'tpu', 'preset': preset, 'target': target, 'rc': proc.returncode,
          'chips': plan['chips'], 'processes': plan['processes'], 'programs': len(programs),
          'points': sum(p['points'] for p in programs if p['name'].endswith('/rounds')),
          'max_bytes_per_chip': worst['bytes_per_chip'], 'max_program': worst['name'],
          'hbm_share': round(worst['bytes_per_chip'] / plan['hbm_per_chip_bytes'], 4),
          'fits': plan['fits'], 'est_study_s': plan['est_study_s'],
          'compile_s': round(sum(p['compile_s'] for p in programs), 1)}


def run(args):
  yield local(args)
  targets = [] if args.quick else [t for t in args.plan_targets.split(',') if t]
  for target in targets:
    for preset in args.plan_presets.split(','):
      yield tpu(preset, target)
