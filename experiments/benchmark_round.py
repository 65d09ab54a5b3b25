"""Benchmark section `round`: the compiled FedAR round on the paper workload.

Paper workload: 432-dim latent features, MLP Dense(10, relu) -> 2 logits,
5 local epochs, batch 32, SMOTE (k=5), per-client IR 10 (200 + 20 samples),
threshold 1.5 (every client resamples). For C in --round_clients
(default 10, 100, 1000; the run's automatic client block, so blocks of
`train.CPU_MLP_CLIENT_BLOCK` clients on a CPU above that many) it reports compile
seconds, median seconds per round, client updates per second, the speedup over the per-client reference loop
(`fedar_jax.reference`) measured in the same run, and the round against the
machine's roofline measured in the same process: the dense 2048x2048 f32
matmul's FLOP/s (peak compute) and an in-place pass over a large array's
bytes/s (memory bandwidth, read + write), the round's analytic FLOPs and bytes (below), the
achieved GFLOP/s and GB/s, and `roofline_fraction` = max(FLOPs / peak, bytes /
bandwidth) / measured round seconds (1.0: at the roofline). XLA's own
`cost_analysis()` figures are printed beside them (`xla_gflop`, `xla_gb`):
XLA counts each loop body once (the local steps, epochs), so they are far
below one round's work.

--round_dtypes=float32,bfloat16 times each --data_dtype on the same clients, the
settings' rounds interleaved (one round of each in turn) so that a shared machine's load
falls on all alike; --round_resample=once resamples before the timed rounds (the
pre-training step of `--resample_every=once`, the default of a run) and times the
training round alone (no SMOTE in its FLOPs and bytes). The reference loop (which
resamples every round) runs for the first setting of --round_resample=round only.

Analytic FLOPs per client per round (multiply-add = 2 FLOPs): SMOTE's distance
matrix 2 N^2 D, plus per local step the first layer's forward and weight
gradient 2 * 2 B D H and the second layer's 3 * 2 B H K, times
epochs * ceil(M / B) steps (M = resampling capacity), plus the test-set
forward pass. Elementwise work (Adam, ReLU, softmax) is not counted.

Analytic bytes per client per round (float32, the client rows in their
--data_dtype, each array read or written once
where a fused kernel would touch it once): SMOTE reads the N x D rows twice
(distances, interpolation) and writes the M x D resampled rows; each epoch
reads the M x D rows twice (the first layer's forward and weight gradient);
the client's parameters and Adam state (3 copies) are read and written once per
step; plus the test set read once. A lower bound on the traffic of any
implementation that streams the rows from memory.
"""
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import workload
from fedar_jax import data_dtype
from fedar_jax import reference
from fedar_jax import fedar_round
from fedar_jax import loop
from fedar_jax import pretraining
from fedar_jax import train


def dense_matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
  """Best-of-`repeats` GFLOP/s of one dense n x n f32 matmul."""
  a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
  f = jax.jit(lambda m: m @ m)
  f(a).block_until_ready()
  best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(repeats))
  return 2 * n**3 / best / 1e9


def memory_gbs(mib: int = 256, repeats: int = 5) -> float:
  """Best-of-`repeats` GB/s of an in-place pass over a `mib` MiB float32 array (bytes read +
  written; the buffer is donated, so no pass pays for fresh pages)."""
  f = jax.jit(lambda v: v + 1.0, donate_argnums=0)
  a = f(jnp.zeros((mib << 18,), jnp.float32))
  a.block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    a = f(a)
    a.block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * a.nbytes / best / 1e9


def _timed(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def round_flops(exp: train.Experiment, resamples: bool = True) -> float:
  """Analytic matmul FLOPs of one round (see module docstring); resamples: the round
  runs SMOTE."""
  c, n, d = exp.data.clients.x.shape
  k, b = exp.spec.num_classes, exp.spec.batch_size
  widths = [d, *workload.PAPER['hidden'], k]
  m = exp.spec.resampler.capacity
  steps = exp.spec.local_epochs * -(-m // b)
  per_step = sum((2 if i == 0 else 3) * 2 * b * widths[i] * widths[i + 1]
                 for i in range(len(widths) - 1))
  smote = 2 * n * n * d if resamples and exp.spec.resampler.name == 'smote' else 0
  test = 2 * exp.data.test.x.shape[0] * sum(widths[i] * widths[i + 1]
                                            for i in range(len(widths) - 1))
  return c * (smote + steps * per_step) + test


def round_bytes(exp: train.Experiment, resamples: bool = True, row_bytes: int = 4) -> float:
  """Analytic bytes one round moves (see module docstring); resamples: the round runs
  SMOTE; row_bytes: bytes per client feature (--data_dtype)."""
  c, n, d = exp.data.clients.x.shape
  k, b = exp.spec.num_classes, exp.spec.batch_size
  widths = [d, *workload.PAPER['hidden'], k]
  m = exp.spec.resampler.capacity
  params = sum(widths[i] * widths[i + 1] + widths[i + 1] for i in range(len(widths) - 1))
  steps = exp.spec.local_epochs * -(-m // b)
  smote = (2 * n * d + m * d) if resamples and exp.spec.resampler.name == 'smote' else 0
  rows = smote + exp.spec.local_epochs * 2 * m * d
  return row_bytes * c * rows + 4.0 * (c * steps * 2 * 3 * params + exp.data.test.x.size)


def xla_cost(compiled) -> tuple[float, float]:
  """(flops, bytes accessed) of a compiled program by XLA's cost analysis (loop bodies
  counted once)."""
  cost = compiled.cost_analysis() or {}
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float(cost.get('flops', 0.0)), float(cost.get('bytes accessed', 0.0))


def run(args):
  matmul = dense_matmul_gflops()
  bandwidth = memory_gbs()
  yield {'setting': 'dense_matmul_2048_f32', 'gflops': round(matmul, 2)}
  yield {'setting': 'inplace_256mib_f32', 'gb_per_s': round(bandwidth, 2)}
  sizes = (10, 100) if args.quick else tuple(
      int(c) for c in (args.round_clients or '10,100,1000').split(','))
  dtypes = args.round_dtypes.split(',')
  once = args.round_resample == 'once'
  for c in sizes:
    exp = train.build(workload.config(num_clients=c))
    test = jax.device_put(exp.data.test)
    steps = {}
    for dtype in dtypes:
      clients = jax.device_put(data_dtype.stored_clients(exp.data.clients, dtype))
      spec = exp.spec
      if once:
        clients = jax.jit(pretraining.make_prepare_clients(spec))(clients, exp.hparams)
        spec = pretraining.round_spec(spec)
      t = time.perf_counter()
      step = jax.jit(fedar_round.make_round(spec)).lower(exp.state, clients, test,
                                                         exp.hparams).compile()
      steps[dtype] = step, clients, time.perf_counter() - t
    states = {dtype: exp.state for dtype in dtypes}
    times = {dtype: [] for dtype in dtypes}
    for _ in range(args.round_repeats or (3 if c >= 1000 else 10)):
      for dtype in dtypes:  # Interleaved: the machine's load falls on every setting alike.
        step, clients, _ = steps[dtype]
        t = time.perf_counter()
        states[dtype], out = step(states[dtype], clients, test, exp.hparams)
        jax.block_until_ready(out)
        times[dtype].append(time.perf_counter() - t)
    ref_s = None
    if c <= 1000 and not once:  # The reference loop (resampling every round): warm it up
      # (it compiles per client shape), then time a round.
      slow = reference.make_reference_round(exp.spec)
      slow(exp.state, exp.data.clients, exp.data.test, exp.hparams)
      ref_s = _timed(lambda: jax.block_until_ready(
          slow(exp.state, exp.data.clients, exp.data.test, exp.hparams)))
    for i, dtype in enumerate(dtypes):
      step, _, compile_s = steps[dtype]
      round_s = statistics.median(times[dtype][1:])
      row_bytes = data_dtype.numpy_dtype(dtype).itemsize
      flops, moved = round_flops(exp, not once), round_bytes(exp, not once, row_bytes)
      roofline_s = max(flops / (matmul * 1e9), moved / (bandwidth * 1e9))
      xla_flops, xla_bytes = xla_cost(step)
      reference_s = ref_s if i == 0 else None
      yield {
          'clients': c, 'compile_s': round(compile_s, 3), 'round_s': round(round_s, 4),
          'client_updates_per_s': round(c / round_s, 1),
          'gflop_per_round': round(flops / 1e9, 3), 'gb_per_round': round(moved / 1e9, 3),
          'gflops': round(flops / round_s / 1e9, 2),
          'gb_per_s': round(moved / round_s / 1e9, 2),
          'ratio_to_matmul': round(flops / round_s / 1e9 / matmul, 3),
          'roofline_s': round(roofline_s, 4),
          'roofline_fraction': round(roofline_s / round_s, 3),
          'bound': 'compute' if flops / matmul >= moved / bandwidth else 'memory',
          'xla_gflop': round(xla_flops / 1e9, 3), 'xla_gb': round(xla_bytes / 1e9, 3),
          'reference_round_s': None if reference_s is None else round(reference_s, 3),
          'speedup_vs_reference': (None if reference_s is None
                                   else round(reference_s / round_s, 1)),
          'device': loop.device_description(),
          'data_dtype': dtype, 'resample': args.round_resample,
          'round_s_all': [round(t, 4) for t in times[dtype]],
      }
