"""--matmul_precision: validated, recorded, and reaching every matmul of the round."""
import jax
import jax.extend
import pytest

from fedar_jax import precision
from fedar_jax import fedar_round
from fedar_jax.config import ConfigError, RunConfig, validate
from tests import helpers


def test_unknown_precision_is_rejected_naming_the_flag():
  with pytest.raises(ConfigError, match='--matmul_precision'):
    validate(RunConfig(matmul_precision='fast'))
  assert RunConfig(matmul_precision='highest').to_dict()['matmul_precision'] == 'highest'


def _dot_precisions(spec, state, clients, test):
  hp = fedar_round.HParams.create(1.5, 0.01, 0)
  jaxpr = jax.make_jaxpr(fedar_round.make_round(spec))(state, clients, test, hp)
  found = []

  def walk(jp):
    for eqn in jp.eqns:
      if eqn.primitive.name == 'dot_general':
        found.append(str(eqn.params['precision']))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)
  walk(jaxpr.jaxpr)
  return found


def test_highest_reaches_every_matmul_and_default_leaves_the_layers_alone():
  clients, test = helpers.unequal_clients(sizes=(12, 10), d=4)
  spec, state = helpers.small_spec(clients, resampler='smote', epochs=1)
  default = _dot_precisions(spec, state, clients, test)
  highest = _dot_precisions(spec._replace(matmul_precision='highest'), state, clients, test)
  assert len(default) == len(highest) > 5
  assert all('HIGHEST' in p for p in highest)
  # Default: only the neighbour search and other resampler internals pin HIGHEST.
  assert any(p == 'None' for p in default)
  assert sum('HIGHEST' in p for p in default) < len(default)
  with pytest.raises(ValueError, match='matmul precision'):
    precision.with_matmul_precision(lambda: 0, 'tf32')
