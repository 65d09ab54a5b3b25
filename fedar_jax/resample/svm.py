"""A small kernel SVM inside jit: which rows are support vectors.

scikit-learn's SVC defaults (RBF kernel, C = 1, gamma = 'scale' =
1 / (D * Var(x)), one-vs-one for several classes) solved by dual coordinate
descent with a bounded number of sweeps. Deviation from libsvm: the bias is
absorbed into the kernel (K + 1, a regularised bias) so the dual has only box
constraints 0 <= alpha <= C; if the sweep bound is reached the current alphas
are used as they are. The support sets therefore differ a little from SVC's.
"""
import itertools

import jax
import jax.numpy as jnp

from fedar_jax.resample import gate
from fedar_jax.resample import neighbors


def rbf_kernel(x, mask):
  """exp(-gamma |xi - xj|^2) with gamma = 1 / (D * variance of the real entries)."""
  d = x.shape[1]
  w = mask.astype(jnp.float32)[:, None]
  n = jnp.maximum(jnp.sum(w) * d, 1.0)
  xf = x.astype(jnp.float32)
  mean = jnp.sum(xf * w) / n
  var = jnp.sum(((xf - mean) ** 2) * w) / n
  gamma = jnp.where(var > 0, 1.0 / (d * jnp.where(var > 0, var, 1.0)), 1.0)
  return jnp.exp(-gamma * neighbors.pairwise_sq_distances(x, x, mask))


def dual_alphas(kernel, sign, active, c: float = 1.0, sweeps: int = 50):
  """Box-constrained SVM dual max sum(a) - a^T Q a / 2, Q = s s^T (K + 1), 0 <= a <= c.

  kernel: float32[N, N]; sign: float32[N] (+1/-1); active: bool[N] rows in the
  problem (others keep alpha 0). Returns float32[N].
  """
  n = sign.shape[0]
  q = sign[:, None] * sign[None, :] * (kernel + 1.0) * (active[:, None] & active[None, :])

  def step(t, state):
    alpha, g = state
    i = t % n
    qii = jnp.maximum(q[i, i], 1e-12)
    new = jnp.clip(alpha[i] + (1.0 - g[i]) / qii, 0.0, c)
    delta = jnp.where(active[i], new - alpha[i], 0.0)
    return alpha.at[i].add(delta), g + delta * q[:, i]

  zeros = jnp.zeros((n,), jnp.float32)
  alpha, _ = jax.lax.fori_loop(0, sweeps * n, step, (zeros, zeros))
  return alpha


def support_vectors(x, y, mask, *, num_classes: int, c: float = 1.0, sweeps: int = 50):
  """bool[N]: rows that are support vectors of some one-vs-one SVM of present classes."""
  counts = gate.class_counts(y, mask, num_classes)
  kernel = rbf_kernel(x, mask)
  pairs = jnp.asarray(list(itertools.combinations(range(num_classes), 2)), jnp.int32)

  def one(pair):
    a, b = pair[0], pair[1]
    active = mask & ((y == a) | (y == b)) & (counts[a] > 0) & (counts[b] > 0)
    sign = jnp.where(y == a, 1.0, -1.0)
    return active & (dual_alphas(kernel, sign, active, c, sweeps) > 0)

  return jnp.any(jax.vmap(one)(pairs), axis=0)
