"""Command line: `python -m fedar_jax.plan --target=v5e:4x4 [--plan_json=FILE] [run/sweep flags]`.

Plans a run (the flags of `fedar_jax.main`) or a sweep (any sweep list of
`fedar_jax.sweep`) before it is launched: builds every program it would
compile (each group's pre-training step and block of rounds, and a streamed
run's per-client evaluation of --eval_clients) from shapes
alone, on the mesh the run would build on --target (a TPU topology as JAX
names it, e.g. v4:2x2x4, v5e:4x4, v5p:2x2x2, v6e:16x16, compiled through
libtpu with no TPU attached; or `local`, this machine's devices), compiles
each ahead of time and prints one table: bytes per chip against the chip's
HBM, XLA's flops and estimated seconds per round, the estimated study time,
compile seconds. --plan_json writes the same as JSON. A program over a chip's
memory is refused with one line naming the settings that would fit (exit 2);
so is bad input (an unknown topology, a target the mesh cannot use, data files
that cannot be read). Data read from files has its labels partitioned on the
host to take its shapes (no image pixels are read). docs/scale.md, "Plan before you launch".
"""
import json
import sys

from fedar_jax import interrupts  # Light: the start-up signal handler goes in before JAX loads.
from fedar_jax import std_streams  # Light: stdlib only.
from fedar_jax import platforms

if __name__ == '__main__':
  std_streams.guard()
  interrupts.exit_while_starting()

from absl import app
from absl import flags

from fedar_jax import cli
from fedar_jax import config as config_lib
from fedar_jax import main as main_lib
from fedar_jax import sweep as sweep_lib  # Defines every flag of the run and of the sweep.

FLAGS = flags.FLAGS

flags.DEFINE_string('target', 'local', 'Where to plan for: a TPU topology as JAX names it '
                    '(v4:2x2x4, v5e:4x4, v5p:2x2x2, v6e:16x16, ...; needs the plan extra) or '
                    'local (this machine\'s devices).')
flags.DEFINE_string('plan_json', '', 'Also write the plan as JSON to this file.')

GIB = 2 ** 30
MIB = 2 ** 20


def _size(n: float) -> str:
  return f'{n / GIB:.2f}G' if n >= GIB else f'{n / MIB:.1f}M'


def _seconds(s: float | None) -> str:
  if s is None:
    return '-'
  return f'{s * 1e3:.3g}ms' if s < 1 else f'{s:.3g}s'


def table(plan) -> str:
  """The plan as a text table, one row per program, and a line on the target and study."""
  t = plan.target
  header = ('program', 'points', 'mesh', 'args', 'temps', 'outputs', 'per chip', 'of HBM',
            'fits', 'GFLOP/round', 'GB/round', 'est/round', 'runs', 'compile')
  rows = [header]
  for p in plan.programs:
    rows.append((p.name, str(p.points), 'x'.join(f'{k}{v}' for k, v in p.mesh.items()),
                 _size(p.argument_bytes), _size(p.temp_bytes), _size(p.output_bytes),
                 _size(p.bytes_per_chip), f'{100 * p.bytes_per_chip / t.hbm_per_chip_bytes:.1f}%',
                 'yes' if p.fits else 'NO', f'{p.flops / 1e9:.3g}', f'{p.bytes_accessed / 1e9:.3g}',
                 ('~' if p.est_source == 'roofline' else '') + _seconds(p.est_s), str(p.runs),
                 f'{p.compile_s:.1f}s'))
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  lines = ['  '.join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(r, widths))).rstrip() for r in rows]
  study = plan.est_study_s
  lines.append(
      f'{t.name}: {t.chips} chips ({len(t.devices)} devices), {t.processes} process(es), '
      f'{_size(t.hbm_per_chip_bytes)} per chip; estimated study time '
      f'{_seconds(study) if study is not None else "- (no XLA estimate on " + t.platform + ")"}'
      f'; fits: {"yes" if plan.fits else "NO"}')
  lines.append('XLA counts each loop body once (est/round: a lower bound); ~: roofline '
               'where XLA gives no estimate; resampler bound: '
               f'{"exact" if plan.exact_bounds else "upper bound"}')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  local = FLAGS.target == 'local'
  try:
    base = cli.config_from_flags(host_memory=local)
    lists = sweep_lib.sweep_lists(FLAGS, base, host_memory=local)
    cli.refuse_idle_flags(base, FLAGS, lists)
  except config_lib.ConfigError as e:
    cli.fail(str(e))
  if local:  # The local plan is for the devices the run would have.
    with cli.bad_input_fails():
      cli.split_cpu(base.cpu_devices)
  from fedar_jax import planning  # Imports JAX; keep flag errors fast.
  from fedar_jax import topology
  try:
    target = topology.resolve(FLAGS.target)
    plan = planning.plan_study(base, lists, target,
                               log=lambda s: print(s, file=sys.stderr, flush=True))
  except config_lib.ConfigError as e:
    cli.fail(str(e))
  cli.print_quietly(table(plan))
  if FLAGS.plan_json:
    with open(FLAGS.plan_json, 'w') as f:
      json.dump(plan.to_json(), f, indent=2)
  if not plan.fits:
    over = next(p for p in plan.programs if not p.fits)
    # --client_block=0 already planned the largest block that fits, if any does.
    block = ('--client_block=0 (the largest client block that fits, found by compiling)'
             if base.client_block > 0 else None)
    cli.fail(planning.refusal(over, target, block))


def run():
  """`python -m fedar_jax.plan` (the console script `fedar-plan`: console_scripts.plan)."""
  platforms.skip_absent_tpu()
  cli.exit_if_help(sys.argv, sys.modules[__name__], sweep_lib, main_lib)
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == '__main__':
  run()
