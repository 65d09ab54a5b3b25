"""The server step: aggregate the client models, then one server-optimizer step.

A server strategy is an optax-style pair `ServerStep(init, update)`:
  init(params, p) -> opt_state (None for a stateless optimizer)
  update(clients: ClientUpdates, opt_state, params, p) -> (params, opt_state)
The aggregator (aggregate.py) turns the weighted client models into a target
model; the optimizer (Reddi et al., "Adaptive Federated Optimization", ICLR
2021) is an optax transformation applied to the pseudo-gradient
g = params - target. When no client counts (every weight 0), the model and the
optimizer state stay as they were.

Each server optimizer is registered (methods/builtin.py) as a factory
`MethodParams -> optax.GradientTransformation` whose hyper-parameters are the
traced leaves of MethodParams: the transformation is built once per trace of
the step, so a new value never rebuilds or recompiles anything. (The values
are not put in the optimizer state, as `optax.inject_hyperparams` would do:
they belong to the run's HParams, and the checkpointed state keeps its layout.)

`fedavg` with server learning rate 1 returns the target bit for bit: the new
model is computed as target + (u + g) with u = -lr * g, and u + g is exactly 0.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedar_jax import aggregate
from fedar_jax.methods import Methods, MethodParams
from fedar_jax.methods import registry


class ClientUpdates(NamedTuple):
  """A round's client models, as the aggregators need them.

  param_sum: float32 pytree, sum of weight * client model (the streaming FedAvg sum).
  weight: float32 scalar, the summed weight.
  client_params: pytree with leaves [P, ...], every slot's model (None when only the
    mean aggregator runs: the sum is enough).
  weights: float32[P], each slot's weight (n_real; 0 for unused slots).
  """
  param_sum: object
  weight: jax.Array
  client_params: object = None
  weights: jax.Array | None = None


class ReddiState(NamedTuple):
  """First and second moments of the adaptive server optimizers (pytrees like params)."""
  m: object
  v: object


def _scale_by_moments(second_moment: Callable, b1, tau) -> optax.GradientTransformation:
  """The adaptive direction m / (sqrt(v) + tau) of Reddi et al. 2021 (Algorithm 2, no bias
  correction): m = b1 m + (1 - b1) g, v = second_moment(v, g); m starts at 0 and v at
  tau^2 (the paper's v_{-1} >= tau^2)."""
  def init(params):
    return ReddiState(jax.tree.map(jnp.zeros_like, params),
                      jax.tree.map(lambda a: jnp.full_like(a, tau ** 2), params))

  def update(g, state, params=None):
    del params
    m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.m, g)
    v = jax.tree.map(second_moment, state.v, g)
    direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + tau), m, v)
    return direction, ReddiState(m, v)

  return optax.GradientTransformation(init, update)


def scale_by_fedadagrad(b1, tau) -> optax.GradientTransformation:
  """FedAdagrad's direction: v = v + g^2."""
  return _scale_by_moments(lambda v, g: v + g * g, b1, tau)


def scale_by_fedadam(b1, b2, tau) -> optax.GradientTransformation:
  """FedAdam's direction: v = b2 v + (1 - b2) g^2."""
  return _scale_by_moments(lambda v, g: b2 * v + (1 - b2) * g * g, b1, tau)


def scale_by_fedyogi(b1, b2, tau) -> optax.GradientTransformation:
  """FedYogi's direction: v = v - (1 - b2) g^2 sign(v - g^2)."""
  return _scale_by_moments(lambda v, g: v - (1 - b2) * g * g * jnp.sign(v - g * g), b1, tau)


# The registered server optimizers (methods/builtin.py): MethodParams -> transformation,
# its hyper-parameters the traced leaves of p.
def fedavg(p: MethodParams) -> optax.GradientTransformation:
  return optax.sgd(p.server_learning_rate)


def fedavgm(p: MethodParams) -> optax.GradientTransformation:
  return optax.sgd(p.server_learning_rate, momentum=p.server_momentum)


def fedadam(p: MethodParams) -> optax.GradientTransformation:
  return optax.chain(scale_by_fedadam(p.server_beta1, p.server_beta2, p.server_tau),
                     optax.scale_by_learning_rate(p.server_learning_rate))


def fedyogi(p: MethodParams) -> optax.GradientTransformation:
  return optax.chain(scale_by_fedyogi(p.server_beta1, p.server_beta2, p.server_tau),
                     optax.scale_by_learning_rate(p.server_learning_rate))


def fedadagrad(p: MethodParams) -> optax.GradientTransformation:
  return optax.chain(scale_by_fedadagrad(p.server_beta1, p.server_tau),
                     optax.scale_by_learning_rate(p.server_learning_rate))


def server_optimizer(name: str, p: MethodParams) -> optax.GradientTransformation:
  """The optax transformation of server optimizer `name` with traced parameters `p`."""
  return registry.resolve('server_optimizer', name)(p)


class ServerStep(NamedTuple):
  """init(params, p) -> opt_state; update(ClientUpdates, opt_state, params, p) -> (params, opt_state)."""
  init: Callable
  update: Callable


def make_server(methods: Methods) -> ServerStep:
  """The server step for `methods.aggregator` and `methods.server_optimizer`."""

  def init(params, p: MethodParams):
    state = server_optimizer(methods.server_optimizer, p).init(params)
    return state if jax.tree.leaves(state) else None

  def update(clients: ClientUpdates, opt_state, params, p: MethodParams):
    if methods.aggregator == 'mean':
      target = aggregate.weighted_mean(clients.param_sum, clients.weight, params)
      counted = clients.weight > 0
    else:
      target = aggregate.robust(methods.aggregator, clients.client_params, clients.weights,
                                params, p)
      counted = jnp.any(clients.weights > 0)
    opt = server_optimizer(methods.server_optimizer, p)  # Once per trace: p is traced.
    g = jax.tree.map(lambda x, t: x.astype(jnp.float32) - t, params, target)
    if opt_state is None:  # Stateless, or a state built without `init` (starts fresh).
      opt_state = opt.init(g)
    u, new_state = opt.update(g, opt_state, params)
    new = jax.tree.map(lambda t, u, g, old: jnp.where(counted, t + (u + g), old).astype(old.dtype),
                       target, u, g, params)
    new_state = jax.tree.map(lambda n, o: jnp.where(counted, n, o), new_state, opt_state)
    return new, (new_state if jax.tree.leaves(new_state) else None)

  return ServerStep(init, update)
