"""Client losses for local class imbalance, computed from the client's own real class counts.

Every loss is `(logits float[B, K], y int32[B], mask bool[B]) -> float32 scalar`,
the mean over real rows (0 when there are none), built by `make_loss` from the
client's pre-resampling class counts n[K] and the traced MethodParams (the
registered `*_loss` functions, methods/builtin.py):

  ce                plain softmax cross-entropy
  focal             -(1 - p_y)^gamma log p_y                       (Lin et al. 2017)
  class_balanced    CE weighted by (1 - beta) / (1 - beta^n_y), weights of the
                    classes present normalised to mean 1           (Cui et al. 2019)
  balanced_softmax  CE of logits + log n_k                         (Ren et al. 2020)
  logit_adjusted    CE of logits + tau log(n_k / sum n)            (Menon et al. 2021)
  fedrs             CE of logits scaled by alpha for classes absent
                    from the client                                (Li & Zhan 2021)
  fedlc             CE of logits - tau n_k^(-1/4)                  (Zhang et al. 2022)

Absent classes (n_k = 0) count as n_k = 1e-8 where a log or a power needs it
(as FedLC's reference code does). Each reduces to plain CE at its neutral
parameter: gamma 0, beta 0, tau 0, alpha 1 (balanced_softmax: equal counts).
"""
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from fedar_jax.methods import MethodParams
from fedar_jax.methods import registry

ABSENT_COUNT = 1e-8


def _mean(per_row: jax.Array, mask: jax.Array) -> jax.Array:
  w = mask.astype(per_row.dtype)
  return jnp.sum(per_row * w) / jnp.maximum(jnp.sum(w), 1.0)


def cross_entropy(logits, y, mask):
  """Mean softmax cross-entropy over real rows (0 when there are none)."""
  return _mean(optax.softmax_cross_entropy_with_integer_labels(logits, y), mask)


def focal(logits, y, mask, gamma):
  """Focal loss; (1 - p_y)^gamma = exp(gamma * log(sum_{k != y} p_k)), finite even at p_y = 1."""
  lse = jax.nn.logsumexp(logits, axis=-1)
  ce = lse - jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
  others = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
  log_rest = jax.nn.logsumexp(others, axis=-1) - lse
  return _mean(jnp.exp(gamma * log_rest) * ce, mask)


def class_balanced_weights(counts: jax.Array, beta) -> jax.Array:
  """float32[K]: 1 / effective number (1 - beta^n) / (1 - beta) per present class, normalised
  to mean 1 over the present classes; 0 for absent ones."""
  present = counts > 0
  beta_n = jnp.where(present, jnp.power(beta, jnp.where(present, counts, 1.0)), 0.0)
  w = jnp.where(present, (1.0 - beta) / jnp.maximum(1.0 - beta_n, 1e-30), 0.0)
  return w * jnp.sum(present) / jnp.maximum(jnp.sum(w), 1e-30)


def class_balanced(logits, y, mask, counts, beta):
  w = class_balanced_weights(counts, beta)[y]
  return _mean(w * optax.softmax_cross_entropy_with_integer_labels(logits, y), mask)


def _safe_counts(counts):
  return jnp.where(counts > 0, counts, ABSENT_COUNT)


def balanced_softmax(logits, y, mask, counts):
  return cross_entropy(logits + jnp.log(_safe_counts(counts)), y, mask)


def logit_adjusted(logits, y, mask, counts, tau):
  prior = _safe_counts(counts) / jnp.maximum(jnp.sum(counts), 1.0)
  return cross_entropy(logits + tau * jnp.log(prior), y, mask)


def fedrs(logits, y, mask, counts, alpha):
  return cross_entropy(logits * jnp.where(counts > 0, 1.0, alpha), y, mask)


def fedlc(logits, y, mask, counts, tau):
  return cross_entropy(logits - tau * jnp.power(_safe_counts(counts), -0.25), y, mask)


# The registered losses (methods/builtin.py):
# (logits, y, mask, counts float32[K], p: MethodParams) -> float32 scalar.
def ce_loss(logits, y, mask, counts, p):
  del counts, p
  return cross_entropy(logits, y, mask)


def focal_loss(logits, y, mask, counts, p):
  del counts
  return focal(logits, y, mask, p.focal_gamma)


def class_balanced_loss(logits, y, mask, counts, p):
  return class_balanced(logits, y, mask, counts, p.cb_beta)


def balanced_softmax_loss(logits, y, mask, counts, p):
  del p
  return balanced_softmax(logits, y, mask, counts)


def logit_adjusted_loss(logits, y, mask, counts, p):
  return logit_adjusted(logits, y, mask, counts, p.la_tau)


def fedrs_loss(logits, y, mask, counts, p):
  return fedrs(logits, y, mask, counts, p.fedrs_alpha)


def fedlc_loss(logits, y, mask, counts, p):
  return fedlc(logits, y, mask, counts, p.fedlc_tau)


def make_loss(name: str, counts: jax.Array, p: MethodParams) -> Callable:
  """The loss `name` for a client with real class counts `counts` (float32[K]):
  (logits, y, mask) -> float32 scalar."""
  loss = registry.resolve('loss', name)
  counts = counts.astype(jnp.float32)
  return lambda logits, y, mask: loss(logits, y, mask, counts, p)
