"""Test session setup: command lines started by tests keep their compilation cache
(default `$XDG_CACHE_HOME/fedar_jax/jax`) in a temporary directory, not the user's home."""
import atexit
import os
import shutil
import tempfile

_CACHE = tempfile.mkdtemp(prefix='fedar_jax_test_cache_')
os.environ['XDG_CACHE_HOME'] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
