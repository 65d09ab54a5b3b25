"""Flax models."""
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
  """The FedAR paper's classifier on latent features: Dense(h, relu)... -> K logits.

  Input float32[..., D]; output float32[..., K] logits.
  """
  num_classes: int
  hidden: Sequence[int] = (10,)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


class ConvEncoder(nn.Module):
  """A small conv encoder for faces: per width, Conv3x3 -> relu -> 2x2 average pool;
  then flatten -> Dense(latent_dim) -> relu.

  Input float32[B, H, W, ch]; output float32[B, latent_dim].
  """
  latent_dim: int = 64
  channels: Sequence[int] = (16, 32)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for width in self.channels:
      x = nn.relu(nn.Conv(width, (3, 3))(x))
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    return nn.relu(nn.Dense(self.latent_dim)(x.reshape(x.shape[0], -1)))


class EncoderHead(NamedTuple):
  """A CNN as two Flax modules: encoder (images -> latents) and head (latents -> logits).

  Parameters are the dict {'encoder': ..., 'head': ...}, so FedAvg, the round
  and latent resampling can treat the parts separately.
  """
  encoder: nn.Module
  head: nn.Module

  def init(self, key: jax.Array, x: jax.Array) -> dict:
    k_enc, k_head = jax.random.split(key)
    enc = self.encoder.init(k_enc, x)
    return {'encoder': enc, 'head': self.head.init(k_head, self.encoder.apply(enc, x))}

  def encode(self, params: dict, x: jax.Array) -> jax.Array:
    """float32[B, H, W, ch] -> latents float32[B, latent_dim]."""
    return self.encoder.apply(params['encoder'], x)

  def classify(self, params: dict, z: jax.Array) -> jax.Array:
    """latents float32[B, latent_dim] -> logits float32[B, K]."""
    return self.head.apply(params['head'], z)

  def apply(self, params: dict, x: jax.Array) -> jax.Array:
    """float32[B, H, W, ch] -> logits float32[B, K]."""
    return self.classify(params, self.encode(params, x))


def cnn(num_classes: int, hidden: Sequence[int] = (), latent_dim: int = 64,
        channels: Sequence[int] = (16, 32)) -> EncoderHead:
  """The small CNN: ConvEncoder + an MLP head with `hidden` widths."""
  return EncoderHead(ConvEncoder(latent_dim, tuple(channels)),
                     MLP(num_classes=num_classes, hidden=tuple(hidden)))


def flat_apply(apply_fn):
  """Wraps apply_fn(params, x[B, D]) to take x[B, ...] (flattened per row)."""
  return lambda params, x: apply_fn(params, x.reshape(x.shape[0], -1))
