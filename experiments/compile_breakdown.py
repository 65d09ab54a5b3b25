"""Where the round's compile time goes: one JSON line per (resampler, program, part).

  python experiments/compile_breakdown.py --resamplers=none,smote,cluster_centroids

Paper workload at --clients (default 100) clients (experiments/workload.py).
For each resampler it times tracing (`jax.make_jaxpr`), lowering and XLA
compilation, and reports the StableHLO size (lines) and XLA's flop estimate of:

  round_per_call   before: the round as one program per round, resampling every
                   round, XLA's default options;
  block_round      `fedar_round.make_rounds` over --block rounds, resampling every round
                   (--resample_every=round), `programs.compiler_options()`;
  prepare          `pretraining.make_prepare_clients` (--resample_every=once), those options and
                   `programs.once_compiler_options()`;
  block_once       `fedar_round.make_rounds` on the prepared rows (--resample_every=once);
  and the parts alone, default options: resampler (vmapped over clients),
  local_train (vmapped, no resampling), metrics (evaluate on the test set).
Programs that run also report seconds per round (a second call).

Compilation caches are off (each program is compiled for real). Timings on a
loaded machine are noisy: compare ratios within one run, or take the minimum
of --repeats (each repeat traces and compiles every program afresh):

  python experiments/compile_breakdown.py --resamplers=all --no_parts \
      --programs=block_round,prepare,block_once --repeats=2

`xla_compile_cpu_s` is the process's CPU seconds (all threads) during XLA
compilation: much less sensitive to other jobs than the wall seconds, and an
upper bound of the wall seconds on an otherwise idle machine when compilation
keeps at least one core busy.
"""
import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp

import workload
from fedar_jax import client
from fedar_jax import metrics
from fedar_jax import pretraining
from fedar_jax import fedar_round
from fedar_jax import resample
from fedar_jax import loop
from fedar_jax import programs as programs_lib
from fedar_jax import train


def measure(fn, *args, options=None, rounds=0, calls=1) -> dict:
  """Trace, lower and compile `fn` for `args` (XLA `options`); seconds of each, HLO
  lines, flops; with `rounds`, also seconds per round: the fastest of `calls` calls
  after a first one; without, `run_s` of the program (same rule)."""
  t = time.perf_counter()
  jax.make_jaxpr(fn)(*args)
  trace_s = time.perf_counter() - t
  t = time.perf_counter()
  lowered = jax.jit(fn).lower(*args)
  lower_s = time.perf_counter() - t
  t, cpu = time.perf_counter(), time.process_time()
  compiled = lowered.compile(options or {})
  compile_s, compile_cpu_s = time.perf_counter() - t, time.process_time() - cpu
  jax.block_until_ready(compiled(*args))
  best = float('inf')
  for _ in range(calls):
    t = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    best = min(best, time.perf_counter() - t)
  run = {'round_s': round(best / rounds, 5)} if rounds else {'run_s': round(best, 5)}
  cost = compiled.cost_analysis() or {}
  if isinstance(cost, list):
    cost = cost[0] if cost else {}
  return {'trace_s': round(trace_s, 3), 'lower_s': round(lower_s, 3),
          'xla_compile_s': round(compile_s, 3), 'xla_compile_cpu_s': round(compile_cpu_s, 3),
          'hlo_lines': lowered.as_text().count('\n'),
          'gflop': round(float(cost.get('flops', 0)) / 1e9, 3), **run,
          'options': options or {}}


PROGRAMS = ('round_per_call', 'block_round', 'prepare', 'block_once')


def run(resampler: str, clients: int, block: int, parts: bool, programs=PROGRAMS, calls=1):
  exp = train.build(workload.config(num_clients=clients, resampler=resampler))
  spec, state, hp = exp.spec, exp.state, exp.hparams
  data, test = jax.device_put(exp.data.clients), jax.device_put(exp.data.test)
  count, opts = jnp.int32(block), programs_lib.compiler_options()
  if 'round_per_call' in programs:
    yield 'round_per_call', measure(fedar_round.make_round(spec), state, data, test, hp, rounds=1,
                                    calls=calls)
  if 'block_round' in programs:
    yield 'block_round', measure(fedar_round.make_rounds(spec, block), state, data, test, hp,
                                 count, options=opts, rounds=block, calls=calls)
  prepare_clients = pretraining.make_prepare_clients(spec)
  if 'prepare' in programs:
    yield 'prepare', measure(prepare_clients, data, hp,
                             options={**opts, **programs_lib.once_compiler_options()},
                             calls=calls)
  if 'block_once' in programs:
    prepared = jax.jit(prepare_clients)(data, hp)
    yield 'block_once', measure(fedar_round.make_rounds(pretraining.round_spec(spec), block),
                                state, prepared, test, hp, count, options=opts, rounds=block,
                                calls=calls)
  if not parts:
    return
  keys = jax.random.split(jax.random.key(0), data.x.shape[0])
  yield 'resampler', measure(jax.vmap(spec.resampler.resample), keys, data.x,
                             data.y, data.mask)

  def train_only(params, k, x, y, m):
    return client.local_train(spec.apply_fn, params, k, x, y, m, learning_rate=1e-3,
                              epochs=spec.local_epochs, batch_size=spec.batch_size)
  yield 'local_train', measure(jax.vmap(train_only, in_axes=(None, 0, 0, 0, 0)), state.params,
                               keys, data.x, data.y, data.mask)
  yield 'metrics', measure(lambda p, t: metrics.evaluate(spec.apply_fn, p, t.x, t.y, t.mask,
                                                         spec.num_classes), state.params, test)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--resamplers', default='none,smote,cluster_centroids',
                      help="comma list, or 'all' (none + the 22 samplers)")
  parser.add_argument('--clients', type=int, default=100)
  parser.add_argument('--block', type=int, default=5)
  parser.add_argument('--no_parts', action='store_true', help='skip the parts alone')
  parser.add_argument('--programs', default=','.join(PROGRAMS),
                      help='comma list of the programs to measure (of %s)' % ', '.join(PROGRAMS))
  parser.add_argument('--repeats', type=int, default=1,
                      help='measure each resampler this many times (lines carry "repeat")')
  parser.add_argument('--calls', type=int, default=1,
                      help='timed calls per program after a first one (the fastest is reported)')
  args = parser.parse_args()
  names = (resample.RESAMPLER_NAMES if args.resamplers == 'all'
           else args.resamplers.split(','))
  programs = args.programs.split(',')
  for flag, given, known in (('--resamplers', names, resample.RESAMPLER_NAMES),
                             ('--programs', programs, PROGRAMS)):
    unknown = [n for n in given if n not in known]
    if unknown:
      print(f'{flag}: unknown {", ".join(unknown)}; known: {", ".join(known)}', file=sys.stderr)
      sys.exit(2)
  for repeat in range(args.repeats):
    for name in names:
      for program, record in run(name, args.clients, args.block, not args.no_parts, programs,
                                     args.calls):
        print(json.dumps({'resampler': name, 'program': program, **record, 'repeat': repeat,
                          'device': loop.device_description()}), flush=True)


if __name__ == '__main__':
  main()
