"""Central differential privacy inside the compiled round: DP-FedAvg (McMahan et al. 2018)
with a fixed or an adaptive clip norm (Andrew et al. 2021).

Each sampled client's update (client model minus global model) is clipped to L2 norm
`clip`; the server sums the clipped updates, adds Gaussian noise N(0, (sigma * clip)^2)
to every coordinate, and divides by the expected cohort size m (a fixed denominator:
every client weighs the same). The server optimizer then steps towards
global + noised mean, as without DP. With --dp=adaptive the clip norm is server state:
after each round it moves geometrically towards the target quantile of the update norms,
estimated from a noised count of the clients whose update was not clipped.

The functions are pure and work on one block of clients at a time (the round sums their
outputs over blocks, `fedar_round.run_clients`), so client blocks, a mesh and several
hosts need nothing more. Noise keys come from (seed, round) on their own stream
(`noise_key`), never equal to the client keys or the sampling keys.
"""
import jax
import jax.numpy as jnp

# Folded into the seed key before the round (as sampling._STREAM, one below it), so the
# noise keys never coincide with client keys (seed, round, client) or sampling keys.
DP_STREAM = 0x7FFFFFFE


# The registered mechanisms (methods/builtin.py; --dp=none runs none): each gives the
# round's clip norm from the state's adaptive clip (None unless adaptive) and the traced
# MethodParams p, as a float32 scalar.
def fixed(state_clip, p) -> jax.Array:
  """--dp=fixed: the clip norm is --dp_clip_norm."""
  del state_clip
  return jnp.asarray(p.dp_clip_norm, jnp.float32)


def adaptive(state_clip, p) -> jax.Array:
  """--dp=adaptive: the clip norm is server state (`ServerState.dp_clip`), updated by
  `next_clip` after each round."""
  del p
  if state_clip is None:
    raise ValueError('--dp=adaptive needs ServerState.dp_clip (train.round_parts sets it '
                     'to --dp_clip_norm)')
  return state_clip


def noise_key(seed: jax.Array, round_index: jax.Array) -> jax.Array:
  """The round's DP noise key from int32 scalars (seed, round)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), DP_STREAM), round_index)


def update_norms(client_params, global_params) -> jax.Array:
  """float32[B]: the L2 norm of each client's update, over every parameter.

  client_params: pytree with leaves [B, ...]; global_params: the same pytree without B.
  """
  def leaf_sq(q, g):
    d = q.astype(jnp.float32) - g.astype(jnp.float32)
    return jnp.sum(d.reshape(d.shape[0], -1) ** 2, axis=1)
  squares = jax.tree.leaves(jax.tree.map(leaf_sq, client_params, global_params))
  return jnp.sqrt(sum(squares))


def clip_factors(norms: jax.Array, clip: jax.Array) -> jax.Array:
  """float32[B]: min(1, clip / norm), the factor that brings each update within `clip`."""
  return jnp.minimum(1.0, clip / jnp.maximum(norms, jnp.finfo(jnp.float32).tiny))


def clipped_sum(client_params, global_params, use: jax.Array, clip: jax.Array):
  """The sum of the used clients' clipped updates, and every client's update norm.

  client_params: pytree, leaves [B, ...]; global_params: leaves without B; use: bool[B]
  (a client with use False adds exactly nothing, even a NaN update); clip: float32 scalar.
  Returns (float32 pytree like global_params, float32[B] norms before clipping).
  """
  norms = update_norms(client_params, global_params)
  factor = jnp.where(use, clip_factors(norms, clip), 0.0)

  def leaf_sum(q, g):
    d = q.astype(jnp.float32) - g.astype(jnp.float32)
    shape = (-1,) + (1,) * (d.ndim - 1)
    return jnp.sum(jnp.where(use.reshape(shape), d * factor.reshape(shape), 0.0), axis=0)

  return jax.tree.map(leaf_sum, client_params, global_params), norms


def centered_unclipped(norms: jax.Array, use: jax.Array, clip: jax.Array) -> jax.Array:
  """float32: sum over used clients of [norm <= clip] - 1/2 (Andrew et al.'s centred bits:
  adding or removing one client changes the sum by 1/2)."""
  bits = (norms <= clip).astype(jnp.float32) - 0.5
  return jnp.sum(jnp.where(use, bits, 0.0))


def gaussian_noise(key: jax.Array, like):
  """Standard normal float32 draws shaped like every leaf of `like` (one key per leaf,
  split from `key` in leaf order)."""
  leaves, treedef = jax.tree.flatten(like)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(leaf), jnp.float32)
                                      for k, leaf in zip(keys, leaves)])


def update_noise_key(key: jax.Array) -> jax.Array:
  """The key of the noise on the summed updates, from the round's `noise_key`."""
  return jax.random.fold_in(key, 0)


def count_noise_key(key: jax.Array) -> jax.Array:
  """The key of the noise on the unclipped count (--dp=adaptive), from `noise_key`."""
  return jax.random.fold_in(key, 1)


def private_target(global_params, clipped: object, key: jax.Array, clip: jax.Array,
                   noise_multiplier: jax.Array, expected_clients: int):
  """global + (clipped + N(0, (noise_multiplier * clip)^2)) / expected_clients.

  clipped: float32 pytree like global_params, the summed clipped updates; key: the
  round's `noise_key`; expected_clients: static m, the expected cohort size.
  Returns the float32 target model the server optimizer steps towards.
  """
  noise = gaussian_noise(update_noise_key(key), clipped)
  stddev = noise_multiplier * clip
  return jax.tree.map(lambda g, s, z: g.astype(jnp.float32) + (s + stddev * z) / expected_clients,
                      global_params, clipped, noise)


def next_clip(clip: jax.Array, centered_count: jax.Array, key: jax.Array,
              expected_clients: int, target_quantile: jax.Array, learning_rate: jax.Array,
              count_stddev: jax.Array) -> jax.Array:
  """The adaptive clip norm after a round (Andrew et al. 2021, geometric update).

  The fraction of unclipped updates is estimated privately as
  b = (centered_count + N(0, count_stddev^2)) / m + 1/2, kept in [0, 1]; the new norm is
  clip * exp(-learning_rate * (b - target_quantile)). All float32 scalars; m static.
  """
  noise = jax.random.normal(count_noise_key(key), (), jnp.float32)
  below = jnp.clip((centered_count + count_stddev * noise) / expected_clients + 0.5, 0.0, 1.0)
  return clip * jnp.exp(-learning_rate * (below - target_quantile))


def effective_noise_multiplier(noise_multiplier: float, count_stddev: float | None) -> float:
  """The noise multiplier a round's release is accounted with (host side, Python floats).

  --dp=fixed: the update noise multiplier sigma. --dp=adaptive (count_stddev given): the
  update sum and the centred count (sensitivity 1/2, noise count_stddev) compose to one
  Gaussian mechanism of multiplier (sigma^-2 + (2 count_stddev)^-2)^(-1/2) (Andrew et al.
  2021, Section 3). 0 means no noise (epsilon infinite).
  """
  if noise_multiplier <= 0:
    return 0.0
  if count_stddev is None:
    return float(noise_multiplier)
  return float((noise_multiplier ** -2 + (2.0 * count_stddev) ** -2) ** -0.5)
