"""Plans a run or a sweep: every program it would compile, compiled ahead of time for a target.

For each program (a group's pre-training step, `prepare`, its block of
rounds, `rounds`, and a streamed run's per-client evaluation of --eval_clients,
`eval_clients`) the plan holds XLA's figures of the compiled program on the
target: bytes per device (arguments, temporaries, outputs, from
`compiled.memory_analysis()`) scaled to a chip, and `compiled.cost_analysis()`'s
flops, bytes accessed and estimated seconds (`optimal_seconds`; TPU only) for
one execution (where XLA gives no `optimal_seconds` on a TPU: the roofline
max(flops / peak flop/s, bytes / HBM bandwidth) of the chip, marked `~`).
XLA counts a loop's body once, so for the block of rounds (a
scan over rounds) these are one round's, with the loops inside a round (client
blocks, local epochs and steps) also counted once: a lower bound on a round.
"""
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedar_jax import abstract_build
from fedar_jax import for_each_client
from fedar_jax import programs as programs_lib
from fedar_jax import sharding
from fedar_jax import sweep_axes
from fedar_jax import sweep_programs
from fedar_jax import topology
from fedar_jax import train
from fedar_jax.config import ConfigError, RunConfig

GIB = 2 ** 30


class ProgramPlan(NamedTuple):
  """One compiled program on the target. Bytes are per chip; flops, bytes_accessed and
  est_s are XLA's per chip for one execution (a round for `rounds`); runs: executions
  in the study (the rounds, or 1 for `prepare`)."""
  name: str
  points: int
  mesh: dict
  argument_bytes: int
  temp_bytes: int
  output_bytes: int
  bytes_per_chip: int
  fits: bool
  flops: float
  bytes_accessed: float
  est_s: float | None
  compile_s: float
  runs: int
  client_block: int
  est_source: str = 'xla'


class StudyPlan(NamedTuple):
  target: topology.Target
  programs: list[ProgramPlan]
  exact_bounds: bool

  @property
  def fits(self) -> bool:
    return all(p.fits for p in self.programs)

  @property
  def est_study_s(self) -> float | None:
    if any(p.est_s is None for p in self.programs):
      return None
    return sum(p.est_s * p.runs for p in self.programs)

  def to_json(self) -> dict:
    """The plan's public JSON form (docs/scale.md, "Plan before you launch")."""
    t = self.target
    return {
        'target': t.name, 'chips': t.chips, 'processes': t.processes,
        'hbm_per_chip_bytes': t.hbm_per_chip_bytes,
        'programs': [{
            'name': p.name, 'points': p.points, 'bytes_per_chip': p.bytes_per_chip,
            'fits': p.fits, 'flops_per_round': p.flops, 'est_round_s': p.est_s,
            'compile_s': round(p.compile_s, 3), 'runs': p.runs, 'mesh': p.mesh,
            'argument_bytes': p.argument_bytes, 'temp_bytes': p.temp_bytes,
            'output_bytes': p.output_bytes, 'bytes_accessed_per_round': p.bytes_accessed,
            'client_block': p.client_block, 'est_source': p.est_source}
                     for p in self.programs],
        'fits': self.fits, 'est_study_s': self.est_study_s,
        'max_class_count': 'exact' if self.exact_bounds else 'upper bound',
    }


def compiler_options(target: topology.Target, fast_compile: bool,
                     streamed: bool = False) -> tuple[dict, dict]:
  """(options of every program, extra options of `prepare`) for the target's compiler;
  streamed: the run streams its cohorts (`programs.once_compiler_options`)."""
  if target.platform == 'tpu' and jax.default_backend() != 'tpu':
    return {}, {}  # train's options are the local backend's; a TPU takes XLA's defaults.
  return (programs_lib.compiler_options(fast_compile),
          programs_lib.once_compiler_options(streamed))


def _memory(compiled, per_chip: int) -> tuple[int, int, int, int]:
  m = compiled.memory_analysis()
  args, temp, out = (int(m.argument_size_in_bytes), int(m.temp_size_in_bytes),
                     int(m.output_size_in_bytes))
  total = args + temp + out - int(m.alias_size_in_bytes)
  return args * per_chip, temp * per_chip, out * per_chip, total * per_chip


def _cost(compiled) -> tuple[float, float, float | None]:
  cost = compiled.cost_analysis() or {}
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  est = cost.get('optimal_seconds')
  return float(cost.get('flops', 0.0)), float(cost.get('bytes accessed', 0.0)), (
      float(est) if est is not None and est >= 0 else None)


def describe(name: str, compiled, seconds: float, target: topology.Target, points: int,
             mesh, runs: int, client_block: int) -> ProgramPlan:
  args, temp, out, total = _memory(compiled, target.devices_per_chip)
  flops, accessed, est = _cost(compiled)
  chip = target.devices_per_chip
  flops, accessed, source = flops * chip, accessed * chip, 'xla'
  if est is None and target.generation in topology.PEAK_PER_CHIP:
    peak, bandwidth = topology.PEAK_PER_CHIP[target.generation]
    est, source = max(flops / peak, accessed / bandwidth), 'roofline'
  return ProgramPlan(name, points, dict(mesh.shape), args, temp, out, total,
                     total <= target.hbm_per_chip_bytes, flops, accessed, est,
                     seconds, runs, client_block, source)


def compile_programs(inputs: abstract_build.ProgramInputs, block_rounds: int,
                     resample_every: str, sweep: bool, num_data: int, mesh,
                     options: tuple[dict, dict]) -> list[tuple[str, object, float]]:
  """[(kind, compiled, compile seconds)] of a run's or group's programs: 'prepare'
  (--resample_every=once), 'rounds' and 'eval_clients' (a streamed run's per-client
  evaluation), compiled by `programs.compile_program` from the inputs' ShapeDtypeStructs,
  one at a time."""
  every, once = options
  program = programs_lib.compile_program(
      inputs.spec, block_rounds, resample_every, inputs.state, inputs.clients, inputs.test,
      inputs.hparams,
      sweep=(lambda spec, prepared: sweep_programs.make_sweep_round(spec, num_data, prepared))
      if sweep else None,
      sweep_prepare_clients=lambda fn: sweep_programs.make_sweep_prepare_clients(
          fn, num_data, mesh),
      options=every, once_options=once,
      count=jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding.replicated(mesh)),
      overlap=False, evaluated=inputs.evaluated)
  kinds = (('prepare', program.prepare_clients), ('rounds', program.step),
           ('eval_clients', program.evaluate_clients))
  return [(kind, compiled, program.compile_s[kind]) for kind, compiled in kinds
          if compiled is not None]


class Unit(NamedTuple):
  """What compiles as one set of programs: a single run, or a sweep group."""
  name: str
  points: tuple[RunConfig, ...]
  num_data: int
  sweep: bool


def units(base: RunConfig, lists: dict) -> list[Unit]:
  """The run (no sweep list given) or the sweep's groups."""
  if not any(lists.values()):
    return [Unit('run', (base,), 1, False)]
  axes = sweep_axes.SweepAxes.of(base, **lists)
  return [Unit(g.name, g.points, g.num_data, True) for g in sweep_axes.make_groups(base, axes)]


def mesh_of(base: RunConfig, lists: dict, target: topology.Target):
  """The mesh the run or sweep would build on the target's devices."""
  if not any(lists.values()):
    return sharding.make_mesh(target.devices)
  return sweep_programs.mesh_for(sweep_axes.SweepAxes.of(base, **lists), target.devices)


def check_devices(base: RunConfig, mesh, target: topology.Target) -> None:
  """Refuses a target whose CLIENTS axis has at least twice as many devices as a round has
  clients (most of its devices would hold only padding clients)."""
  per_round, _ = abstract_build.layout(base, None, 0)
  slots = per_round.clients_per_round or per_round.num_clients
  devices = sharding.client_devices(mesh)
  if devices >= 2 * slots:
    raise ConfigError('target', f'{target.name} puts {devices} devices on the clients axis but '
                      f'a round has {slots} clients: use a smaller slice or more clients')


def client_data_bytes_per_chip(base: RunConfig, lists: dict, mesh,
                               shape: abstract_build.DataShape,
                               target: topology.Target) -> int:
  """Bytes per chip of the client data arguments alone (a floor under every program)."""
  _, rows = abstract_build.layout(base, mesh, base.client_block)
  u = sweep_axes.SweepAxes.of(base, **lists).data_sets if any(lists.values()) else 1
  row = 4 * math.prod(shape.row_shape) + 5
  per_device = u * rows * shape.capacity * row / mesh.size
  return int(per_device * target.devices_per_chip)


def slice_advice(target: topology.Target, bytes_per_chip: int) -> str:
  """'a larger slice (v5e:8x8, ...)' with enough chips at this program's bytes per chip."""
  needed = math.ceil(target.chips * bytes_per_chip / target.hbm_per_chip_bytes)
  names = topology.larger_slices(target, needed)
  if target.generation and names:
    return f'a slice of >= {needed} chips ({", ".join(names[:2])})'
  return f'>= {needed} chips'


def refuse_data(base: RunConfig, lists: dict, mesh, shape, target: topology.Target) -> None:
  """Refuses at once (before building anything) a study whose client data alone
  exceeds a chip's memory."""
  need = client_data_bytes_per_chip(base, lists, mesh, shape, target)
  have = target.hbm_per_chip_bytes
  if need <= have:
    return
  # A streamed run holds its cohort: fewer clients per round would fit, not fewer clients.
  layout, _ = abstract_build.layout(base, None, 0)
  flag = 'clients_per_round' if abstract_build.streamed(base) else 'num_clients'
  fit_clients = int(layout.num_clients * have / need)
  raise ConfigError('target', f'{target.name}: the client data alone needs '
                    f'{need / GIB:.1f} GiB per chip, {have / GIB:.1f} GiB available; would fit: '
                    f'{slice_advice(target, need)}, or --{flag} <= {fit_clients}')


def plan_study(base: RunConfig, lists: dict, target: topology.Target,
               log: Callable = lambda s: None) -> StudyPlan:
  """Compiles every program of the run or sweep (`lists`: sweep_lists) for `target`.

  The client block is --client_block's; with 0, a CNN on a CPU runs one client
  at a time, the MLP on a CPU in blocks when it has many (`train.auto_client_block`),
  and otherwise the largest block whose programs fit a chip (`fitting_block`: all
  clients at once when they fit).
  Raises ConfigError for what cannot be planned (a target the
  mesh cannot use, client data over a chip's memory).
  """
  mesh = mesh_of(base, lists, target)
  check_devices(base, mesh, target)
  all_units = units(base, lists)
  shape = abstract_build.data_shape(
      [base.replace(**d) for d in sweep_axes.data_settings(sweep_axes.SweepAxes.of(
          base, **lists))])
  refuse_data(base, lists, mesh, shape, target)
  streamed = abstract_build.streamed(base)
  options = compiler_options(target, base.fast_compile, streamed)
  programs = []
  for unit in all_units:
    cfg = unit.points[0]
    compile_with = lambda block, unit=unit, cfg=cfg: compile_programs(
        abstract_build.program_inputs(unit.points, unit.num_data, shape, mesh, block,
                                      unit.sweep),
        1 if streamed else programs_lib.block_length(cfg), cfg.resample_every, unit.sweep,
        unit.num_data, mesh, options)
    block = train.auto_client_block(cfg, target.platform)
    log(f'{unit.name}: compiling for {target.name}')
    compiled = compile_with(block)
    if not block and cfg.client_block == 0 and _bytes(compiled, target) > target.hbm_per_chip_bytes:
      log(f'{unit.name}: all clients at once do not fit; searching a client block')
      found = fitting_block(compile_with, base, mesh, target, {0: compiled})
      if found is not None:
        block, compiled = found
    for kind, program, seconds in compiled:
      # A streamed run prepares each round's cohort (--resample_every=once) and evaluates
      # its clients after every round.
      runs = cfg.rounds if kind == 'rounds' or streamed else 1
      programs.append(describe(f'{unit.name}/{kind}', program, seconds, target,
                               len(unit.points), mesh, runs, block))
  return StudyPlan(target, programs, shape.exact)


def _bytes(compiled, target: topology.Target) -> int:
  """The largest bytes per chip of compiled programs [(kind, compiled, seconds)]."""
  return max(_memory(c, target.devices_per_chip)[3] for _, c, _ in compiled)


def fitting_block(compile_with: Callable, base: RunConfig, mesh, target: topology.Target,
                  done: dict | None = None) -> tuple[int, list] | None:
  """(the largest client block whose programs fit a chip, its compiled programs), by
  compiling (`largest_fitting_block`; compile_with(block) -> [(kind, compiled, s)],
  `done`: {block: those} already compiled); None when not even the smallest fits."""
  slots, devices = block_slots(base, mesh)
  done = dict(done or {})

  def fits(block):
    if block not in done:
      done[block] = compile_with(block)
    return _bytes(done[block], target) <= target.hbm_per_chip_bytes
  block = largest_fitting_block(fits, slots, devices)
  return None if block is None else (block, done[block])


def block_slots(base: RunConfig, mesh) -> tuple[int, int]:
  """(clients per round, devices on the CLIENTS axis): the range of client blocks."""
  layout, _ = abstract_build.layout(base, mesh, 0)
  return layout.clients_per_round or layout.num_clients, sharding.client_devices(mesh)


def points_advice(program: ProgramPlan, target: topology.Target) -> str | None:
  """'<= P points per program' where fewer points would fit (bytes scale with points)."""
  if program.points <= 1:
    return None
  per_point = program.bytes_per_chip / program.points
  most = int(target.hbm_per_chip_bytes // per_point)
  return f'<= {most} points per program (split the sweep lists)' if most >= 1 else None


def refusal(program: ProgramPlan, target: topology.Target, block_advice: str | None) -> str:
  """One line: the program, bytes needed vs available, the settings that would fit."""
  advice = []
  if block_advice:
    advice.append(block_advice)
  points = points_advice(program, target)
  if points:
    advice.append(points)
  advice.append(slice_advice(target, program.bytes_per_chip))
  return (f'{program.name} needs {program.bytes_per_chip / GIB:.2f} GiB per chip on '
          f'{target.name}, {target.hbm_per_chip_bytes / GIB:.2f} GiB available; would fit: '
          + ', or '.join(advice))


def _block_sizes(slots: int, devices: int) -> list[int]:
  """Effective block sizes (`for_each_client.block_layout`) of blocks of devices x 2^k
  clients, smallest first."""
  blocks = [devices << k for k in range(max(1, slots // devices).bit_length() + 1)]
  return sorted({for_each_client.block_layout(slots, b, devices)[1] for b in blocks})


def largest_fitting_block(fits: Callable[[int], bool], slots: int, devices: int) -> int | None:
  """The largest client block b (a --client_block value) with fits(b), by bisection over
  the effective block sizes (memory grows with the block); 0 when all clients in one
  block fit, None when not even the smallest block does."""
  sizes = _block_sizes(slots, devices)
  if fits(0):
    return 0
  lo, hi = 0, len(sizes) - 1  # sizes[hi] (one block) does not fit.
  if not fits(sizes[0]):
    return None
  while hi - lo > 1:
    mid = (lo + hi) // 2
    if fits(sizes[mid]):
      lo = mid
    else:
      hi = mid
  return sizes[lo]
