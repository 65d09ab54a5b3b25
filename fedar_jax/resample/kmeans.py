"""Masked k-means (k-means++ initialisation, bounded Lloyd iterations) inside jit.

Centres live in S static slots; slot s is used iff `center_active[s]` and
clusters only rows whose `group` equals `center_group[s]`, so one call runs an
independent k-means per group (e.g. per class) with a traced number of centres.
"""
import math

import jax
import jax.numpy as jnp

from fedar_jax.resample import neighbors
from fedar_jax.resample import strategy


def kmeans_pp_init(key, x, mask, group, center_group, center_active, trials: int = 0):
  """Greedy k-means++ seeding (scikit-learn's): each slot draws `trials` rows of its
  group with probability ∝ squared distance to the group's centres so far
  (uniform for the first, and when every candidate coincides with a centre) and
  keeps the one that lowers the group's potential most. trials=0 means
  2 + int(log(S)), scikit-learn's choice for S clusters. Returns float32[S, D].
  """
  n = x.shape[0]
  s_total = center_group.shape[0]
  trials = trials or 2 + int(math.log(max(s_total, 1)))
  x = x.astype(jnp.float32)
  mu = neighbors.masked_mean(x, mask)  # centred: stable under a common feature offset
  xc = x - mu
  sqn = jnp.sum(xc * xc, axis=-1)

  def dist_to(c):
    c = c - mu
    return jnp.maximum(sqn + jnp.sum(c * c) - 2.0 * jnp.matmul(
        xc, c, precision=jax.lax.Precision.HIGHEST), 0.0)

  def body(s, state):
    centers, mind2 = state
    in_group = mask & (group == center_group[s])
    w = jnp.where(in_group, mind2, 0.0)
    first = jnp.any(jnp.isinf(w))
    w = jnp.where(jnp.isinf(w), 1.0, w)  # no centre in the group yet: uniform
    w = jnp.where(jnp.any(w > 0), w, in_group.astype(jnp.float32))  # all coincide: uniform
    keys = jax.random.split(jax.random.fold_in(key, s), trials)
    picks = jax.vmap(lambda k: strategy.weighted_choice(k, w))(keys)
    d2 = jax.vmap(lambda p: dist_to(x[p]))(picks)                      # [T, N]
    new_min = jnp.minimum(jnp.where(jnp.isinf(mind2), jnp.inf, mind2)[None, :], d2)
    potential = jnp.sum(jnp.where(in_group[None, :], new_min, 0.0), axis=1)
    best = jnp.where(first, 0, jnp.argmin(potential))
    ok = center_active[s] & jnp.any(in_group)
    mind2 = jnp.where(ok & in_group, jnp.minimum(mind2, d2[best]), mind2)
    centers = centers.at[s].set(jnp.where(ok, x[picks[best]], centers[s]))
    return centers, mind2

  centers0 = jnp.zeros((s_total, x.shape[1]), jnp.float32)
  centers, _ = jax.lax.fori_loop(0, s_total, body,
                                 (centers0, jnp.full((n,), jnp.inf, jnp.float32)))
  return centers


def assign(x, mask, group, centers, center_group, center_active):
  """Nearest usable centre of every row (int32[N]; S for rows with none)."""
  d = neighbors.pairwise_sq_distances(x, centers, mask)
  ok = mask[:, None] & center_active[None, :] & (group[:, None] == center_group[None, :])
  d = jnp.where(ok, d, jnp.inf)
  a = jnp.argmin(d, axis=1)
  return jnp.where(jnp.any(ok, axis=1), a, centers.shape[0]).astype(jnp.int32)


def kmeans(key, x, mask, group, center_group, center_active, max_iter: int = 100):
  """Lloyd's k-means per group.

  Args:
    key: PRNG key (initialisation). x: float[N, D]; mask: bool[N]; group: int32[N].
    center_group: int32[S]; center_active: bool[S] (static S).
    max_iter: bound on Lloyd iterations; it stops earlier when no assignment
      changes. If the bound is reached, the centres after `max_iter` updates
      are returned (not converged, still valid centres).

  Returns:
    (centers float32[S, D], assignment int32[N] (S for masked rows)).
    A centre that loses all its rows keeps its position.
  """
  s_total = center_group.shape[0]
  centers = kmeans_pp_init(key, x, mask, group, center_group, center_active)
  xf = x.astype(jnp.float32)

  def update(a):
    onehot = jax.nn.one_hot(a, s_total, dtype=jnp.float32)  # masked rows (a = S) -> zeros
    sums = jnp.matmul(onehot.T, xf, precision=jax.lax.Precision.HIGHEST)
    cnt = jnp.sum(onehot, axis=0)[:, None]
    return sums, cnt

  def cond(state):
    _, _, changed, it = state
    return changed & (it < max_iter)

  def body(state):
    centers, a, _, it = state
    sums, cnt = update(a)
    centers = jnp.where(cnt > 0, sums / jnp.maximum(cnt, 1.0), centers)
    new_a = assign(x, mask, group, centers, center_group, center_active)
    return centers, new_a, jnp.any(new_a != a), it + 1

  a0 = assign(x, mask, group, centers, center_group, center_active)
  centers, a, _, _ = jax.lax.while_loop(cond, body, (centers, a0, jnp.asarray(True), jnp.int32(0)))
  return centers, a
