"""A run's compiled programs: the block of rounds and the pre-training step of
--resample_every=once, compiled ahead of the first round for their arguments' shapes,
with the XLA options they compile under (BUILD_NOTES, *Compile time*); for fedar-plan,
also a streamed run's per-client evaluation (--eval_clients)."""
import concurrent.futures
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedar_jax import cohort_stream
from fedar_jax import fedar_round
from fedar_jax import pretraining


# The most rounds one compiled call can run (its outputs are stacked [block, ...]).
MAX_BLOCK = 50


def block_length(cfg) -> int:
  """Rounds the compiled call of a RunConfig holds: up to the next checkpoint, at most
  MAX_BLOCK."""
  return min(cfg.checkpoint_every, cfg.rounds, MAX_BLOCK)


class Program(NamedTuple):
  """A run's compiled programs. prepare_clients: (clients, hparams) -> the round's client
  data (the pre-training step of --resample_every=once; None for round). step: a block
  of rounds, (state, clients, test, hparams, count) -> (state, RoundOutput [block, ...]).
  compile_s: seconds each program took to compile, {'prepare': s, 'rounds': s,
  'eval_clients': s} (two programs compiled at once overlap: their seconds are not
  additive). evaluate_clients: a streamed run's per-client evaluation,
  (params, ClientData [E, N, ...]) -> {name: float32[E]} ([S, E] for a sweep), where
  compiled (`compile_client_evaluation`), else None."""
  prepare_clients: Callable | None
  step: Callable
  compile_s: dict | None = None
  evaluate_clients: Callable | None = None


def _timed(pool, fn: Callable, seconds: dict, kind: str):
  """Runs fn() in `pool` (None: now), recording its seconds under `kind`; a future."""
  def run():
    t = time.perf_counter()
    out = fn()
    seconds[kind] = time.perf_counter() - t
    return out
  if pool is None:
    done = concurrent.futures.Future()
    done.set_result(run())
    return done
  return pool.submit(run)


def compile_program(spec: fedar_round.RoundSpec, block_rounds: int, resample_every: str, state,
                    clients, test, hparams, sweep: Callable | None = None,
                    sweep_prepare_clients: Callable | None = None,
                    options: dict | None = None, once_options: dict | None = None,
                    count=None, overlap: bool | None = None, evaluated=None) -> Program:
  """Compiles the run's programs for these arguments' shapes (arrays, or
  `jax.ShapeDtypeStruct`s with shardings: fedar-plan compiles for other targets).

  options: XLA compiler options of every program (default `compiler_options()`);
  once_options: the pre-training step's extra options (default `once_compiler_options()`).
  sweep: for a sweep (leaves of state and hparams [S, ...]), builds the
  vmapped round from (round spec, prepared: whether the clients are the
  per-point output of the pre-training step); None for a single run.
  sweep_prepare_clients: for a sweep, maps `pretraining.make_prepare_clients`'s
  function to its version over the sweep axis.
  count: the block's traced round count as lowered (default an int32 scalar).
  overlap: compile the pre-training step and the block of rounds at once (default:
  a single run on one local device, whose outputs' sharding is known before
  compiling); fedar-plan compiles one at a time so that each compile is timed alone.
  """
  prepare_clients = pending = None
  round_spec = spec
  options = compiler_options() if options is None else options
  once_options = once_compiler_options() if once_options is None else once_options
  if overlap is None:
    overlap = sweep is None and jax.device_count() == 1
  seconds = {}
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    if resample_every == 'once':
      fn = pretraining.make_prepare_clients(spec)
      if sweep is not None:
        fn = sweep_prepare_clients(fn)
      lowered, round_spec = jax.jit(fn).lower(clients, hparams), pretraining.round_spec(spec)
      step_options = {**options, **once_options}
      if overlap:
        # XLA compiles a program on one thread: the two compile at once.
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        clients = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                               lowered.out_info)
        pending = _timed(pool, lambda: lowered.compile(step_options), seconds, 'prepare')
      else:
        prepare_clients = _timed(None, lambda: lowered.compile(step_options), seconds,
                                 'prepare').result()
        # The round is compiled for the shardings the compiled step really outputs.
        clients = prepare_clients.out_info
    round_fn = None if sweep is None else sweep(round_spec, resample_every == 'once')
    rounds = _timed(None, lambda: compile_rounds(round_spec, block_rounds, state, clients, test,
                                                 hparams, round_fn, options, count),
                    seconds, 'rounds').result()
    if pending is not None:
      prepare_clients = pending.result()
  evaluate = None
  if evaluated is not None:
    evaluate = _timed(None, lambda: compile_client_evaluation(spec, state.params, evaluated,
                                                              sweep is not None),
                      seconds, 'eval_clients').result()
  return Program(prepare_clients, rounds, seconds, evaluate)


def compile_client_evaluation(spec: fedar_round.RoundSpec, params, evaluated, sweep: bool):
  """The compiled per-client evaluation of a streamed run (`cohort_stream.client_evaluator`)
  for these shapes, under XLA's defaults as the run's jit compiles it on its first call.

  params: the model's parameters (leaves [S, ...] for a sweep); evaluated: ClientData
  [E, N, ...]. Returns evaluate(params, evaluated) -> {name: float32[E]} ([S, E] for a sweep).
  """
  return cohort_stream.client_evaluator(spec, sweep).lower(params, evaluated).compile()


def compile_rounds(spec: fedar_round.RoundSpec, block_rounds: int, state, clients, test, hparams,
                   round_fn, options: dict, count=None):
  """The compiled block of rounds (`fedar_round.make_rounds`, XLA `options`) for these
  arguments' shapes; count: the traced round count as lowered (default an int32 scalar).

  Returns step(state, clients, test, hparams, count) -> (state, RoundOutput [block_rounds, ...]).
  """
  rounds = jax.jit(fedar_round.make_rounds(spec, block_rounds, round_fn))
  count = jnp.int32(0) if count is None else count
  return rounds.lower(state, clients, test, hparams, count).compile(options)


GPU_BACKENDS = ('gpu', 'cuda', 'rocm')  # jax.default_backend() names of GPUs


def compiler_options(fast_compile: bool = False) -> dict:
  """XLA options for the run's programs (BUILD_NOTES, *Compile time*).

  CPU: XLA's classic fusion emitters instead of its MLIR ones (a faster compile, the
  same round time). GPU with `fast_compile` (--fast_compile): no Triton GEMM fusions,
  so no Triton tiling autotuning (a faster compile, a slower round). Otherwise XLA's
  defaults (the pre-training step adds `once_compiler_options()`).
  """
  backend = jax.default_backend()
  if backend == 'cpu':
    return {'xla_cpu_use_fusion_emitters': False}
  if backend in GPU_BACKENDS and fast_compile:
    return {'xla_gpu_enable_triton_gemm': False}
  return {}


def once_compiler_options(streamed: bool = False) -> dict:
  """Extra XLA options for the pre-training step, which runs once per run or group.

  CPU: LLVM optimisation level 1 instead of 3: a faster compile, a slightly slower
  step, the same rows bit for bit (BUILD_NOTES, *The two programs compile at once*).
  GPU: no Triton GEMM fusions (cuBLAS), so no Triton tiling autotuning of the
  resampler's distance matrices: a much faster compile, the same run time
  (BUILD_NOTES, *Where a GPU's compile goes*). The block of rounds keeps XLA's
  defaults. streamed: none; a streamed run prepares every round's cohort, so the step
  compiles as the round does (BUILD_NOTES, *Streamed cohorts*).
  """
  if streamed:
    return {}
  backend = jax.default_backend()
  if backend == 'cpu':
    return {'xla_backend_optimization_level': 1}
  if backend in GPU_BACKENDS:
    return {'xla_gpu_enable_triton_gemm': False}
  return {}
