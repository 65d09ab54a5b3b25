"""Benchmark section `round`: the compiled FedAR round on the paper workload.

Paper workload: 432-dim latent features, MLP Dense(10, relu) -> 2 logits,
5 local epochs, batch 32, SMOTE (k=5), per-client IR 10 (200 + 20 samples),
threshold 1.5 (every client resamples). For C in {10, 100, 1000} it reports
compile seconds, median seconds per round, client updates per second, the
achieved GFLOP/s (analytic matmul FLOPs, below) and its ratio to a dense
2048x2048 f32 matmul measured in the same run, and the speedup over the
per-client reference loop (`fedar_jax.reference`) measured in the same run.

Analytic FLOPs per client per round (multiply-add = 2 FLOPs): SMOTE's distance
matrix 2 N^2 D, plus per local step the first layer's forward and weight
gradient 2 * 2 B D H and the second layer's 3 * 2 B H K, times
epochs * ceil(M / B) steps (M = resampling capacity), plus the test-set
forward pass. Elementwise work (Adam, ReLU, softmax) is not counted.
"""
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import workload
from fedar_jax import reference
from fedar_jax import fedar_round
from fedar_jax import loop
from fedar_jax import train


def dense_matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
  """Best-of-`repeats` GFLOP/s of one dense n x n f32 matmul."""
  a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
  f = jax.jit(lambda m: m @ m)
  f(a).block_until_ready()
  best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(repeats))
  return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def round_flops(exp: train.Experiment) -> float:
  """Analytic matmul FLOPs of one round (see module docstring)."""
  c, n, d = exp.data.clients.x.shape
  k, b = exp.spec.num_classes, exp.spec.batch_size
  widths = [d, *workload.PAPER['hidden'], k]
  m = exp.spec.resampler.capacity
  steps = exp.spec.local_epochs * -(-m // b)
  per_step = sum((2 if i == 0 else 3) * 2 * b * widths[i] * widths[i + 1]
                 for i in range(len(widths) - 1))
  smote = 2 * n * n * d if exp.spec.resampler.name == 'smote' else 0
  test = 2 * exp.data.test.x.shape[0] * sum(widths[i] * widths[i + 1]
                                            for i in range(len(widths) - 1))
  return c * (smote + steps * per_step) + test


def run(args):
  matmul = dense_matmul_gflops()
  yield {'setting': 'dense_matmul_2048_f32', 'gflops': round(matmul, 2)}
  sizes = (10, 100) if args.quick else (10, 100, 1000)
  for c in sizes:
    exp = train.build(workload.config(num_clients=c))
    clients, test = jax.device_put(exp.data.clients), jax.device_put(exp.data.test)
    t = time.perf_counter()
    step = jax.jit(fedar_round.make_round(exp.spec)).lower(exp.state, clients, test,
                                                          exp.hparams).compile()
    compile_s = time.perf_counter() - t
    state, times = exp.state, []
    for _ in range(3 if c >= 1000 else 10):
      t = time.perf_counter()
      state, out = step(state, clients, test, exp.hparams)
      jax.block_until_ready(out)
      times.append(time.perf_counter() - t)
    round_s = statistics.median(times[1:])
    # The reference loop: warm it up (compiles once per client shape), then time one round.
    slow = reference.make_reference_round(exp.spec)
    slow(exp.state, exp.data.clients, exp.data.test, exp.hparams)
    ref_s = _timed(lambda: jax.block_until_ready(
        slow(exp.state, exp.data.clients, exp.data.test, exp.hparams)))
    gflops = round_flops(exp) / round_s / 1e9
    yield {
        'clients': c, 'compile_s': round(compile_s, 3), 'round_s': round(round_s, 4),
        'client_updates_per_s': round(c / round_s, 1), 'gflop_per_round': round(
            round_flops(exp) / 1e9, 3), 'gflops': round(gflops, 2),
        'ratio_to_matmul': round(gflops / matmul, 3), 'reference_round_s': round(ref_s, 3),
        'speedup_vs_reference': round(ref_s / round_s, 1),
        'device': loop.device_description(),
    }
