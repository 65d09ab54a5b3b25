"""JAX's persistent compilation cache for the command lines (`--compilation_cache_dir`).

Compiled programs are stored on disk, keyed by the program and the platform,
so an identical rerun (or a resume, or a sweep group whose program repeats)
loads them instead of compiling. XLA's own caches (per-fusion GPU autotuning,
`jax_persistent_cache_enable_xla_caches`) stay off: with them on, a GPU program
compiled after other programs had filled them can fail at run time
(CUDA_ERROR_ILLEGAL_INSTRUCTION; BUILD_NOTES, *Compilation cache*).
"""
import os

# Programs that compile faster than this are not worth a disk entry.
MIN_COMPILE_SECONDS = 0.1


def default_dir() -> str:
  """The per-user cache directory: $XDG_CACHE_HOME (or ~/.cache)/fedar_jax/jax."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'fedar_jax', 'jax')


def check(directory: str) -> None:
  """Makes `directory` (the cache, if absent); ConfigError naming --compilation_cache_dir and
  the path if it cannot be made or written ('' : nothing to check)."""
  from fedar_jax.config import ConfigError
  from fedar_jax import workdir
  if not directory:
    return
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise ConfigError('compilation_cache_dir', f'{directory!r} cannot be made '
                      f'({e.strerror or type(e).__name__}); give another directory, or an '
                      'empty one to turn the cache off') from None
  workdir.check_writable(directory, 'compilation_cache_dir', directory)


def enable(directory: str) -> None:
  """Turns the persistent cache on in `directory` (created if absent); '' leaves it off."""
  if not directory:
    return
  import jax  # Imported here: flag parsing must not import JAX.
  os.makedirs(directory, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECONDS)
  jax.config.update('jax_persistent_cache_enable_xla_caches', 'none')
