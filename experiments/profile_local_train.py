"""Where the round's time goes: local training on the paper workload, taken apart.

  python experiments/profile_local_train.py [--clients=100]
  python experiments/profile_local_train.py --variants [--clients=100] [--repeats=7]
      [--blocks=25] [--resample_once]

Prints JSON lines (milliseconds, medians of 5 runs), all measured in this run:
  local_train     the vmapped local training of C clients (5 epochs, batch 32,
                  220 rows, 432 features, MLP 10)
  fwd_bwd_sgd     the same steps with forward/backward and plain SGD only
                  (no shuffling gathers, no Adam, no empty-batch masking)
  batched_matmul  one first-layer matmul of all clients, [C,32,432] x [C,432,10]
  weight_grad     one first-layer weight gradient, [C,32,432]^T x [C,32,10]
  batched_matmul_hd, weight_grad_hd
                  the same with the kernel stored transposed, [C,10,432] (local_train's
                  layout): x [C,32,432] x w^T, and the gradient g^T x -> [C,10,432]
  dense_matmul    a 2048 x 2048 f32 matmul, for GFLOP/s reference

`--variants`: the compiled FedAR round on the paper workload (experiments/workload.py,
C = --clients; SMOTE in the round, or with --resample_once the training round on rows
resampled once before, a run's default) with each CPU lever of local training on or
off, all compiled in this process and timed interleaved (one round of each variant in
turn, --repeats times), so machine load hits every variant alike. The levers, named in each variant:
  kernels DH|HD     Dense kernels trained as stored ([D, H]) or transposed ([H, D];
                    `client.local_train`'s default)
  block all|B       all clients in one vmap, or client blocks of B (--client_block=B;
                    B in --blocks)
  order argsort|packed
                    each epoch's row order by argsort, or by `client.epoch_order`'s
                    single-operand sort of packed keys (the default; same order)
The first variant has every lever off, the last ones every lever on. Prints per
variant the median wall and process-CPU seconds per round, their ratios to the
first variant, and the largest difference of any global parameter from the first
variant's after one round (float32 reordering only).
"""
import argparse
import contextlib
import functools
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import workload
from fedar_jax import client
from fedar_jax import fedar_round
from fedar_jax import models
from fedar_jax import pretraining
from fedar_jax import train


def median_ms(f, *args, repeats=5):
  jax.block_until_ready(f(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - t)
  return 1e3 * float(np.median(times))


@contextlib.contextmanager
def replaced(module, name: str, value):
  """While open, `module.name` is `value` (read when the round is traced)."""
  original = getattr(module, name)
  setattr(module, name, value)
  try:
    yield
  finally:
    setattr(module, name, original)


def argsort_order(u, mask):
  """The epoch order by a two-operand argsort (what `client.epoch_order` equals)."""
  return jnp.argsort(jnp.where(mask, u, 2.0)).astype(jnp.int32)


def compiled_round(exp, spec, clients, test, transposed: bool, block: int, packed: bool):
  """The round of `spec` compiled with the levers given (`variants`)."""
  spec = spec._replace(client_block=block)
  with contextlib.ExitStack() as stack:
    if not transposed:
      stack.enter_context(replaced(client, 'local_train', functools.partial(
          client.local_train, transposed_matrices=False)))
    if not packed:
      stack.enter_context(replaced(client, 'epoch_order', argsort_order))
    return jax.jit(fedar_round.make_round(spec)).lower(exp.state, clients, test,
                                                      exp.hparams).compile()


def variants(c: int, blocks: list[int], repeats: int, resample_once: bool):
  """Times the round's layout levers interleaved (module docstring); prints JSON lines."""
  exp = train.build(workload.config(num_clients=c))
  clients, test = jax.device_put(exp.data.clients), jax.device_put(exp.data.test)
  spec = exp.spec
  if resample_once:  # A run's default: the rows resampled once, the round trains on them.
    clients = jax.jit(pretraining.make_prepare_clients(spec))(clients, exp.hparams)
    spec = pretraining.round_spec(spec)
  levers = [(False, 0, False), (True, 0, False), (False, 0, True), (True, 0, True)]
  levers += [v for b in blocks for v in ((False, b, False), (True, b, True))]
  steps = {}
  for transposed, block, packed in levers:
    name = (f'kernels {"HD" if transposed else "DH"}, block {block or "all"}, '
            f'order {"packed" if packed else "argsort"}')
    steps[name] = compiled_round(exp, spec, clients, test, transposed, block, packed)
  finals = {name: jax.block_until_ready(step(exp.state, clients, test, exp.hparams))[0]
            for name, step in steps.items()}
  wall = {name: [] for name in steps}
  cpu = {name: [] for name in steps}
  for _ in range(repeats):
    for name, step in steps.items():
      t, p = time.perf_counter(), time.process_time()
      jax.block_until_ready(step(exp.state, clients, test, exp.hparams))
      wall[name].append(time.perf_counter() - t)
      cpu[name].append(time.process_time() - p)
  first = next(iter(steps))
  base_wall, base_cpu = statistics.median(wall[first]), statistics.median(cpu[first])
  for name in steps:
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree.leaves(finals[name].params), jax.tree.leaves(finals[first].params)))
    w, p = statistics.median(wall[name]), statistics.median(cpu[name])
    print(json.dumps({'variant': name, 'wall_s': round(w, 4), 'cpu_s': round(p, 4),
                      'wall_ratio': round(w / base_wall, 3), 'cpu_ratio': round(p / base_cpu, 3),
                      'max_param_diff': diff}))
  print(json.dumps({'clients': c, 'repeats': repeats, 'resample_once': resample_once,
                    'device': jax.devices()[0].device_kind}))


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--clients', type=int, default=100)
  parser.add_argument('--variants', action='store_true')
  parser.add_argument('--blocks', default='25')
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--resample_once', action='store_true')
  args = parser.parse_args()
  c = args.clients
  if args.variants:
    variants(c, [int(b) for b in args.blocks.split(',')], args.repeats, args.resample_once)
    return
  n, d, b, epochs, (h,) = (workload.PAPER[k] for k in (
      'samples_per_client', 'feature_dim', 'batch_size', 'local_epochs', 'hidden'))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(c, n, d)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, 2, (c, n)).astype(np.int32))
  mask = jnp.ones((c, n), bool)
  model = models.MLP(num_classes=2, hidden=(h,))
  params = model.init(jax.random.key(0), x[0, :1])
  keys = jax.random.split(jax.random.key(1), c)
  steps = epochs * -(-n // b)

  local = jax.jit(jax.vmap(lambda k, xc, yc, mc: client.local_train(
      model.apply, params, k, xc, yc, mc, learning_rate=1e-3, epochs=epochs, batch_size=b)))

  def sgd(xc, yc):
    def body(p, i):
      start = (i * b) % (n - b)
      xb = jax.lax.dynamic_slice_in_dim(xc, start, b)
      yb = jax.lax.dynamic_slice_in_dim(yc, start, b)
      g = jax.grad(lambda q: client.masked_cross_entropy(model.apply(q, xb), yb,
                                                         jnp.ones(b, bool)))(p)
      return jax.tree.map(lambda a, ga: a - 1e-3 * ga, p, g), None
    return jax.lax.scan(body, params, jnp.arange(steps))[0]

  w = jnp.ones((c, d, h))
  g = jnp.ones((c, b, h))
  dense = jnp.ones((2048, 2048))
  flops = 2 * c * b * d * h
  rows = {
      'local_train': median_ms(local, keys, x, y, mask),
      'fwd_bwd_sgd': median_ms(jax.jit(jax.vmap(sgd)), x, y),
      'batched_matmul': median_ms(jax.jit(lambda a, k: jnp.einsum('cbd,cdh->cbh', a, k)),
                                  x[:, :b], w),
      'weight_grad': median_ms(jax.jit(lambda a, k: jnp.einsum('cbd,cbh->cdh', a, k)),
                               x[:, :b], g),
      'batched_matmul_hd': median_ms(jax.jit(lambda a, k: jnp.einsum('cbd,chd->cbh', a, k)),
                                     x[:, :b], jnp.ones((c, h, d))),
      'weight_grad_hd': median_ms(jax.jit(lambda a, k: jnp.einsum('cbh,cbd->chd', k, a)),
                                  x[:, :b], g),
      'dense_matmul': median_ms(jax.jit(lambda a: a @ a), dense),
  }
  for name, ms in rows.items():
    record = {'part': name, 'ms': round(ms, 3)}
    if name.startswith(('batched_matmul', 'weight_grad')):
      record['gflops'] = round(flops / ms / 1e6, 2)
      record['per_round_ms'] = round(ms * steps, 1)
    if name == 'dense_matmul':
      record['gflops'] = round(2 * 2048**3 / ms / 1e6, 2)
    print(json.dumps(record))
  print(json.dumps({'steps_per_round': steps, 'clients': c}))


if __name__ == '__main__':
  main()
