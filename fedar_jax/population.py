"""Command line: `python -m fedar_jax.population --out=DIR [data flags]` (fedar-population).

Writes the population the data flags describe (the same flags as fedar-run:
--dataset, --data_path, --partition, --num_clients, --samples_per_client,
--imbalance_ratio, --seed, --attacker_fraction, ...) to the directory DIR, in
the on-disk format fedar_jax/data/population_store.py reads (docs/data.md,
"Populations on disk"). Synthetic populations are drawn one shard of clients
at a time, so memory does not grow with --num_clients. The rows go to
DIR.partial first; DIR appears only when complete. A killed write resumes when
the same command is run again. Bad input exits with status 2 and one line
naming the flag or file.
"""
import os
import signal
import sys
import time

from fedar_jax import interrupts  # Light: the start-up signal handler goes in before JAX loads.
from fedar_jax import std_streams  # Light: stdlib only.

if __name__ == '__main__':
  std_streams.guard()
  interrupts.exit_while_starting()

from absl import app
from absl import flags
from absl import logging

from fedar_jax import cli
from fedar_jax import config as config_lib

FLAGS = flags.FLAGS

flags.DEFINE_string('out', None, 'Population directory to write.')
flags.DEFINE_string('population_dtype', '', 'Storage dtype of the client rows: float32, '
                    'float16 (half the size; rows rounded to float16) or uint8 (8-bit images); '
                    'empty: uint8 for 8-bit images, float32 otherwise.')
flags.DEFINE_integer('clients_per_shard', 0, 'Clients per shard file (0: about 256 MiB of '
                     'rows per shard).')
cli.define_config_flags()


def check_flags() -> config_lib.RunConfig:
  """The validated config and population flags (ConfigError naming the flag)."""
  from fedar_jax.data import population_store
  cfg = cli.config_from_flags(host_memory=FLAGS.dataset != 'synthetic')
  cli.refuse_idle_flags(cfg)
  if not FLAGS.out:
    raise config_lib.ConfigError('out', 'is required: the population directory to write')
  allowed = ('',) + population_store.STORAGE_DTYPES
  if FLAGS.population_dtype not in allowed:
    raise config_lib.ConfigError('population_dtype', f'{FLAGS.population_dtype!r} is not one '
                                 f'of {", ".join(allowed[1:])}')
  if FLAGS.clients_per_shard < 0:
    raise config_lib.ConfigError('clients_per_shard', 'must be >= 0')
  return cfg


def _exit_on_signal(partial: str) -> None:
  """A signal ends the write with one line (the finished shards stay in `partial`)."""
  def handler(signum, frame):
    del frame
    print(f'interrupted; {partial} keeps the shards written so far: rerun the same command '
          'to resume', file=sys.stderr, flush=True)
    os._exit(128 + signum)  # Shards are renamed into place whole; nothing half-done is kept.
  for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, handler)


def main(argv):
  cli.no_arguments(argv)
  with cli.bad_input_fails():
    cfg = check_flags()
  logging.set_verbosity(logging.WARNING)
  from fedar_jax import progress as progress_lib
  from fedar_jax.data import population_writer
  out = os.path.normpath(FLAGS.out)
  _exit_on_signal(out + '.partial')
  bar = {}

  def progress(clients, total, shards, num_shards):
    if 'bar' not in bar:
      bar['bar'] = progress_lib.Progress(num_shards, 1, desc='population', unit='shard')
      bar['bar'].skip(shards)
      bar['t'] = time.perf_counter()
      return
    now = time.perf_counter()
    bar['bar'].round_done(now - bar['t'], f'clients {clients:,}/{total:,}')
    bar['t'] = now

  start = time.perf_counter()
  with cli.bad_input_fails():
    meta = population_writer.write(cfg, out, FLAGS.population_dtype, FLAGS.clients_per_shard,
                                   ' '.join(sys.argv), progress)
  if 'bar' in bar:
    bar['bar'].close()
  print(f"population: {meta['num_clients']:,} clients x {meta['capacity']} rows x "
        f"{tuple(meta['row_shape'])} {meta['storage_dtype']}, {meta['shard_bytes'] / 1e9:.2f} "
        f"GB in {meta['num_shards']} shards, {time.perf_counter() - start:.1f}s -> {out}")
  std_streams.exit_if_stdout_lost(f'the population is complete in {out}')


def run():
  """`python -m fedar_jax.population` (the console script `fedar-population`)."""
  cli.exit_if_help(sys.argv, sys.modules[__name__])
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == '__main__':
  run()
