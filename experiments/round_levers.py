"""CPU levers on the training round of the paper workload, timed interleaved in one process.

  python experiments/round_levers.py [--clients=100] [--blocks=0,10,25,50] [--repeats=9]

Builds the paper workload (experiments/workload.py) at C = --clients, resamples once (the
pre-training step of `--resample_every=once`, a run's default) and compiles the training
round once per client block of --blocks (0: every client in one vmapped block; B: a scan
over blocks of about B clients, vmap inside one; a run's automatic block on a CPU is
`train.CPU_MLP_CLIENT_BLOCK`). Then it runs one round of each setting in turn,
--repeats times, so a shared machine's load falls on every setting alike, and prints one
JSON line per setting: the median round seconds and its ratio to the first setting's, with
every timed round. Every setting computes the same round (to float32 reordering).
"""
import argparse
import json
import statistics
import time

import jax

import workload
from fedar_jax import fedar_round
from fedar_jax import pretraining
from fedar_jax import train


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--clients', type=int, default=100)
  parser.add_argument('--blocks', default='0,10,25,50')
  parser.add_argument('--repeats', type=int, default=9)
  args = parser.parse_args()
  blocks = [int(b) for b in args.blocks.split(',')]
  settings = {}
  for block in blocks:
    # A block of every client is one block (0 would take the automatic block).
    exp = train.build(workload.config(num_clients=args.clients,
                                      client_block=block or args.clients))
    clients, test = jax.device_put(exp.data.clients), jax.device_put(exp.data.test)
    clients = jax.jit(pretraining.make_prepare_clients(exp.spec))(clients, exp.hparams)
    step = jax.jit(fedar_round.make_round(pretraining.round_spec(exp.spec))).lower(
        exp.state, clients, test, exp.hparams).compile()
    settings[block] = [step, exp.state, clients, test, exp.hparams]
  times = {block: [] for block in blocks}
  for _ in range(args.repeats + 1):  # The first round of each is a warm-up.
    for block, setting in settings.items():
      step, state, clients, test, hparams = setting
      t = time.perf_counter()
      setting[1], out = step(state, clients, test, hparams)
      jax.block_until_ready(out)
      times[block].append(time.perf_counter() - t)
  base = statistics.median(times[blocks[0]][1:])
  for block in blocks:
    median = statistics.median(times[block][1:])
    print(json.dumps({'clients': args.clients, 'client_block': block,
                      'round_s': round(median, 4), 'ratio': round(median / base, 3),
                      'round_s_all': [round(t, 4) for t in times[block][1:]]}), flush=True)


if __name__ == '__main__':
  main()
