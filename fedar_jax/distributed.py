"""Multi-host runs: `jax.distributed` start-up and which clients this process holds.

One process per host; every process runs the same program on a global mesh
(sharding.make_mesh) and loads only the client rows its own devices hold.
"""
import os
import sys
import threading

import jax
from jax.experimental import multihost_utils
import numpy as np

_started = False


def initialize(coordinator_address: str = '', num_processes: int = 1,
               process_id: int = 0, timeout_s: int = 120) -> bool:
  """Calls `jax.distributed.initialize` once, before any other JAX work.

  coordinator_address: 'host:port' of process 0; 'auto' lets JAX detect
  everything from the environment (Cloud TPU pods, SLURM); '' means a
  single-process run (nothing to do). If the processes have not all joined
  within `timeout_s` seconds, the command ends with one line naming the address
  (exit status 2). Returns whether this is a multi-process run.
  """
  global _started
  if coordinator_address and not _started:
    timer = threading.Timer(timeout_s, _give_up, (coordinator_address, num_processes, timeout_s))
    timer.daemon = True
    timer.start()
    try:  # JAX's own timeout (an abort with a stack dump) is kept past ours.
      if coordinator_address == 'auto':
        jax.distributed.initialize(initialization_timeout=timeout_s + 60)
      else:
        jax.distributed.initialize(coordinator_address, num_processes, process_id,
                                   initialization_timeout=timeout_s + 60)
    finally:
      timer.cancel()
    _started = True
  return jax.process_count() > 1


def _give_up(coordinator_address: str, num_processes: int, timeout_s: int) -> None:
  """Ends the process from the timer thread: the join blocks inside XLA, past Python's reach."""
  print(f'error: --coordinator_address: the {num_processes} processes did not all join at '
        f'{coordinator_address} within {timeout_s} s (--coordinator_timeout_s); start every '
        'process with the same --coordinator_address and --num_processes, and check that '
        'process 0 is reachable there', file=sys.stderr, flush=True)
  os._exit(2)


def local_rows(sharding: jax.sharding.Sharding, global_rows: int) -> tuple[int, int]:
  """[start, stop) of the leading-axis rows this process's devices hold under `sharding`."""
  spans = sorted({(s[0].start or 0, global_rows if s[0].stop is None else s[0].stop)
                  for s in sharding.addressable_devices_indices_map((global_rows,)).values()})
  start, stop = spans[0][0], spans[-1][1]
  covered = sum(b - a for a, b in spans)
  if covered != stop - start:
    raise ValueError(f'this process holds non-contiguous client rows {spans}')
  return start, stop


def global_max(value: int) -> int:
  """The largest `value` over all processes (the value itself in a single process)."""
  if jax.process_count() == 1:
    return int(value)
  return int(np.max(multihost_utils.process_allgather(np.int64(value))))


def global_sum(value: np.ndarray) -> np.ndarray:
  """`value` summed over all processes (float64; the value itself in a single process)."""
  if jax.process_count() == 1:
    return np.asarray(value, np.float64)
  # JAX moves float32 (x64 off): send value as hi + lo float32 parts, add in float64.
  value = np.asarray(value, np.float64)
  hi = value.astype(np.float32)
  lo = (value - hi).astype(np.float32)
  parts = np.asarray(multihost_utils.process_allgather(np.stack([hi, lo])), np.float64)
  return np.sum(parts[:, 0] + parts[:, 1], axis=0)


def is_writer() -> bool:
  """Only process 0 writes the workdir."""
  return jax.process_index() == 0
