"""Server aggregation of the client models: the streaming weighted sum (FedAvg's mean)
and the robust aggregators, which need every client's model at once.

Every aggregator takes the client models as a pytree with leaves [P, ...] and
weights float32[P]; a client with weight 0 (padding, not sampled, non-finite
update, no real samples) never counts, whatever its parameters hold. All return
the aggregate model (float32 pytree without the client axis); the server
optimizer (server.py) then steps towards it.

The robust aggregators are registered in methods/builtin.py; each is
`(x float32[P, D], use bool[P], w float32[P], g float32[D], p: MethodParams)
-> float32[D]` on the flattened client models x, the global model g and the
traced parameters p, and `robust` calls the one a run names.
"""
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from fedar_jax.methods import MethodParams
from fedar_jax.methods import registry

# Weiszfeld iterations of the geometric median and its smoothing nu (Pillutla et al. 2022).
WEISZFELD_ITERS = 100
WEISZFELD_NU = 1e-6


def finite_updates(client_params) -> jax.Array:
  """bool[C]: True where every parameter of the client's update is finite (no NaN/inf).

  client_params: pytree whose leaves have a leading client axis [C, ...].
  """
  leaves = jax.tree.leaves(client_params)
  ok = [jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1) for leaf in leaves]
  return jnp.stack(ok).all(axis=0)


def weighted_sum(client_params, weights: jax.Array):
  """Sum of client parameters weighted by `weights` (float32[C]), as float32.

  A client with weight 0 contributes exactly nothing, even if its parameters
  are NaN/inf (`jnp.where`, not a multiplication by 0). FedAvg over client
  blocks is the running sum of these partial sums divided by the summed weight.
  """
  w = weights.astype(jnp.float32)
  use = w > 0

  def leaf_sum(leaf):
    shape = (-1,) + (1,) * (leaf.ndim - 1)
    terms = jnp.where(use.reshape(shape), leaf.astype(jnp.float32) * w.reshape(shape), 0.0)
    return jnp.sum(terms, axis=0)

  return jax.tree.map(leaf_sum, client_params)


def weighted_mean(param_sum, weight: jax.Array, like):
  """FedAvg: `param_sum / weight` (float32 pytree); `like` (the old model) where weight is 0."""
  return jax.tree.map(lambda s, old: jnp.where(weight > 0, s / jnp.maximum(weight, 1e-30), old),
                      param_sum, like)


def _flat(client_params):
  """float32[P, D]: each client's parameters as one vector."""
  return jax.vmap(lambda t: ravel_pytree(t)[0])(
      jax.tree.map(lambda a: a.astype(jnp.float32), client_params))


def _sorted_used(x: jax.Array, use: jax.Array) -> jax.Array:
  """x[P, D] sorted along P per coordinate, unused clients (as +inf) last."""
  return jnp.sort(jnp.where(use[:, None], x, jnp.inf), axis=0)


def coordinate_median(x: jax.Array, use: jax.Array, w: jax.Array, g: jax.Array,
                      p: MethodParams) -> jax.Array:
  """Coordinate-wise median of the used rows (Yin et al. 2018); x float32[P, D], use bool[P]."""
  del w, g, p
  n = jnp.maximum(jnp.sum(use), 1)
  s = _sorted_used(x, use)
  return 0.5 * (s[(n - 1) // 2] + s[n // 2])


def trimmed_mean(x: jax.Array, use: jax.Array, w: jax.Array, g: jax.Array,
                 p: MethodParams) -> jax.Array:
  """Coordinate-wise mean after dropping the floor(trim_fraction * n) largest and smallest
  of the n used values (Yin et al. 2018)."""
  del w, g
  n = jnp.sum(use)
  k = jnp.floor(p.trim_fraction * n).astype(n.dtype)
  rank = jnp.arange(x.shape[0])[:, None]
  keep = (rank >= k) & (rank < n - k)
  s = _sorted_used(x, use)
  return jnp.sum(jnp.where(keep, s, 0.0), axis=0) / jnp.maximum(n - 2 * k, 1)


def krum_scores(x: jax.Array, use: jax.Array, f: jax.Array) -> jax.Array:
  """float32[P]: Krum score of each used client (Blanchard et al. 2017), the sum of its
  squared distances to its n - f - 2 nearest other used clients (at least 1); +inf unused."""
  n = jnp.sum(use)
  d2 = jax.lax.map(lambda xi: jnp.sum((x - xi) ** 2, axis=1), x)
  others = use[None, :] & ~jnp.eye(x.shape[0], dtype=bool)
  s = jnp.sort(jnp.where(others, d2, jnp.inf), axis=1)
  k = jnp.clip(n - f - 2, 1, jnp.maximum(n - 1, 0))
  near = jnp.arange(x.shape[0])[None, :] < k
  return jnp.where(use, jnp.sum(jnp.where(near, s, 0.0), axis=1), jnp.inf)


def krum(x: jax.Array, use: jax.Array, w: jax.Array, g: jax.Array,
         p: MethodParams) -> jax.Array:
  """The used client with the lowest Krum score (f = byzantine_clients)."""
  del w, g
  return x[jnp.argmin(krum_scores(x, use, p.byzantine_clients))]


def multi_krum(x: jax.Array, use: jax.Array, w: jax.Array, g: jax.Array,
               p: MethodParams) -> jax.Array:
  """Plain mean of the m = n - f used clients with the lowest Krum scores
  (El Mhamdi et al. 2018); ties broken by client slot."""
  del w, g
  scores = krum_scores(x, use, p.byzantine_clients)
  m = jnp.maximum(jnp.sum(use) - p.byzantine_clients, 1)
  rank = jnp.argsort(jnp.argsort(scores))
  chosen = use & (rank < m)
  return jnp.sum(jnp.where(chosen[:, None], x, 0.0), axis=0) / jnp.maximum(jnp.sum(chosen), 1)


def geometric_median(x: jax.Array, use: jax.Array, w: jax.Array, g: jax.Array,
                     p: MethodParams) -> jax.Array:
  """Weighted geometric median by smoothed Weiszfeld iterations (RFA, Pillutla et al. 2022),
  started at the weighted mean; WEISZFELD_ITERS steps, distances floored at WEISZFELD_NU."""
  del g, p
  w = jnp.where(use, w, 0.0)
  xs = jnp.where(use[:, None], x, 0.0)
  z0 = jnp.sum(w[:, None] * xs, axis=0) / jnp.maximum(jnp.sum(w), 1e-30)

  def step(z, _):
    beta = w / jnp.maximum(jnp.sqrt(jnp.sum((xs - z) ** 2, axis=1)), WEISZFELD_NU)
    return jnp.sum(beta[:, None] * xs, axis=0) / jnp.maximum(jnp.sum(beta), 1e-30), None

  return jax.lax.scan(step, z0, None, length=WEISZFELD_ITERS)[0]


def norm_clip(x: jax.Array, use: jax.Array, w: jax.Array, g: jax.Array,
              p: MethodParams) -> jax.Array:
  """g + weighted mean of the client updates x_i - g, each clipped to L2 norm <= clip_norm
  (Sun et al. 2019)."""
  w = jnp.where(use, w, 0.0)
  delta = jnp.where(use[:, None], x - g, 0.0)
  norm = jnp.sqrt(jnp.sum(delta ** 2, axis=1))
  scale = jnp.minimum(1.0, p.clip_norm / jnp.maximum(norm, 1e-12))
  return g + jnp.sum((w * scale)[:, None] * delta, axis=0) / jnp.maximum(jnp.sum(w), 1e-30)


def robust(name: str, client_params, weights: jax.Array, global_params, p: MethodParams):
  """Aggregate model of the used clients (weights > 0) by aggregator `name` (not 'mean').

  client_params: pytree with leaves [P, ...]; weights: float32[P] (n_real, or 0);
  global_params: the current global model; p: traced parameters.
  Returns a float32 pytree shaped like global_params (meaningless if no client is used).
  """
  use = weights > 0
  x = _flat(client_params)
  g, unravel = ravel_pytree(jax.tree.map(lambda a: a.astype(jnp.float32), global_params))
  aggregator = registry.resolve('aggregator', name)
  out = aggregator(x, use, weights.astype(jnp.float32), g, p)
  return unravel(out)
