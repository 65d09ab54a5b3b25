"""Test session setup: command lines started by tests keep their compilation cache
(default `$XDG_CACHE_HOME/fedar_jax/jax`) in a temporary directory, not the user's home;
with libtpu installed and no TPU attached, JAX starts without trying a TPU (in this
process and the commands it starts: `platforms.skip_absent_tpu`, before JAX loads)."""
import atexit
import os
import shutil
import tempfile

from fedar_jax import platforms

platforms.skip_absent_tpu()

_CACHE = tempfile.mkdtemp(prefix='fedar_jax_test_cache_')
os.environ['XDG_CACHE_HOME'] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
