"""A run's compiled programs: the block of rounds and the pre-training step of
--resample_every=once, compiled ahead of the first round for their arguments' shapes,
with the XLA options they compile under (BUILD_NOTES, *Compile time*)."""
import concurrent.futures
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

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
  of rounds, (state, clients, test, hparams, count) -> (state, RoundOutput [block, ...])."""
  prepare_clients: Callable | None
  step: Callable


def compile_program(spec: fedar_round.RoundSpec, block_rounds: int, resample_every: str, state,
                    clients, test, hparams, sweep: Callable | None = None,
                    sweep_prepare_clients: Callable | None = None,
                    options: dict | None = None) -> Program:
  """Compiles the run's programs for these arguments' shapes.

  options: XLA compiler options (default `compiler_options()`).
  sweep: for a sweep (leaves of state and hparams [S, ...]), builds the
  vmapped round from (round spec, prepared: whether the clients are the
  per-point output of the pre-training step); None for a single run.
  sweep_prepare_clients: for a sweep, maps `pretraining.make_prepare_clients`'s
  function to its version over the sweep axis.
  """
  prepare_clients = pending = None
  round_spec = spec
  options = compiler_options() if options is None else options
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    if resample_every == 'once':
      fn = pretraining.make_prepare_clients(spec)
      if sweep is not None:
        fn = sweep_prepare_clients(fn)
      lowered, round_spec = jax.jit(fn).lower(clients, hparams), pretraining.round_spec(spec)
      step_options = {**options, **once_compiler_options()}
      if sweep is None and jax.device_count() == 1:
        # One device: the outputs' sharding is known before compiling, so the two
        # programs compile at once (XLA compiles a program on one thread).
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        clients = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                               lowered.out_info)
        pending = pool.submit(lowered.compile, step_options)
      else:
        prepare_clients = lowered.compile(step_options)
        # The round is compiled for the shardings the compiled step really outputs.
        clients = prepare_clients.out_info
    round_fn = None if sweep is None else sweep(round_spec, resample_every == 'once')
    rounds = compile_rounds(round_spec, block_rounds, state, clients, test, hparams, round_fn,
                            options)
    if pending is not None:
      prepare_clients = pending.result()
  return Program(prepare_clients, rounds)


def compile_rounds(spec: fedar_round.RoundSpec, block_rounds: int, state, clients, test, hparams,
                   round_fn, options: dict):
  """The compiled block of rounds (`fedar_round.make_rounds`, XLA `options`) for these
  arguments' shapes.

  Returns step(state, clients, test, hparams, count) -> (state, RoundOutput [block_rounds, ...]).
  """
  rounds = jax.jit(fedar_round.make_rounds(spec, block_rounds, round_fn))
  return rounds.lower(state, clients, test, hparams, jnp.int32(0)).compile(options)


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


def once_compiler_options() -> dict:
  """Extra XLA options for the pre-training step, which runs once per run or group.

  CPU: LLVM optimisation level 1 instead of 3: a faster compile, a slightly slower
  step, the same rows bit for bit (BUILD_NOTES, *The two programs compile at once*).
  GPU: no Triton GEMM fusions (cuBLAS), so no Triton tiling autotuning of the
  resampler's distance matrices: a much faster compile, the same run time
  (BUILD_NOTES, *Where a GPU's compile goes*). The block of rounds keeps XLA's
  defaults.
  """
  backend = jax.default_backend()
  if backend == 'cpu':
    return {'xla_backend_optimization_level': 1}
  if backend in GPU_BACKENDS:
    return {'xla_gpu_enable_triton_gemm': False}
  return {}
