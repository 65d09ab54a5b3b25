"""The command-line layer answers bad flags without JAX: config and cli load without it."""
import json
import subprocess
import sys

import pytest

from fedar_jax import config
from fedar_jax import defences
from fedar_jax import resample
from tests.test_checkpoint import ROOT

# Prints the fedar_jax modules that import JAX themselves, and whether JAX got loaded.
_WHO_IMPORTS_JAX = '''
import builtins, json, sys
importers, real_import = set(), builtins.__import__
def tracking(name, globals=None, *args, **kwargs):
  caller = (globals or {}).get('__name__', '')
  if name.split('.')[0] == 'jax' and caller.startswith('fedar_jax'):
    importers.add(caller)
  return real_import(name, globals, *args, **kwargs)
builtins.__import__ = tracking
import fedar_jax.config, fedar_jax.cli, fedar_jax.main, fedar_jax.sweep
print(json.dumps([sorted(importers), 'jax' in sys.modules]))
'''


def _jax_importers() -> tuple[list, bool]:
  out = subprocess.run([sys.executable, '-c', _WHO_IMPORTS_JAX], cwd=ROOT, capture_output=True,
                       text=True, check=True, timeout=120).stdout
  importers, loaded = json.loads(out)
  return importers, loaded


def test_config_cli_and_the_commands_load_without_jax():
  importers, loaded = _jax_importers()
  assert not importers and not loaded, importers


def test_config_names_every_resampler():
  assert config.RESAMPLERS == resample.RESAMPLER_NAMES


def test_one_defence_check_for_flags_and_configs():
  """A named defence against a flag it sets: the same line from the flags and from a
  RunConfig built in Python."""
  from absl import flags
  from fedar_jax import cli
  values = flags.FlagValues()
  cli.define_config_flags(values)
  values(['prog', '--defence=fedar_median', '--aggregator=krum'])
  line = '--defence: fedar_median sets --aggregator=median; drop --aggregator=krum'
  with pytest.raises(config.ConfigError, match=f'^{line}$'):
    cli.config_from_flags(values)
  with pytest.raises(config.ConfigError, match=f'^{line}$'):
    config.validate(defences.apply(config.RunConfig(defence='fedar_median'))
                    .replace(aggregator='krum'))
