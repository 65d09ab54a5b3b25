"""Flax models."""
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


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


class PatchConv(nn.Module):
  """nn.Conv(features, (3, 3)) (SAME padding, stride 1, bias) as patches @ kernel.

  The same parameters as nn.Conv (kernel float32[3, 3, ch, features], bias
  float32[features], same initializers) and the same outputs to float
  rounding, but one matmul: float32[B, H, W, 9 * ch] x [9 * ch, features].
  Under vmap over per-client parameters a lax convolution becomes a grouped
  convolution, which XLA:CPU runs far slower than the batched matmul this
  becomes (BUILD_NOTES, "Conv models on CPU").
  """
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ch = x.shape[-1]
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, ch, self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    h, w = x.shape[-3:-1]
    pad = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)])
    # Patch channel (i * 3 + j) * ch + c is kernel[i, j, c]: kernel.reshape's order.
    patches = jnp.concatenate([pad[..., i:i + h, j:j + w, :] for i in range(3)
                               for j in range(3)], axis=-1)
    return patches @ kernel.reshape(9 * ch, self.features) + bias


def avg_pool_2x2(x: jax.Array) -> jax.Array:
  """nn.avg_pool(x, (2, 2), strides=(2, 2)) (VALID: an odd last row/column is
  dropped) as a reshape and a mean; x float32[B, H, W, ch]."""
  b, h, w, ch = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, ch).mean(axis=(2, 4))


class ConvEncoder(nn.Module):
  """A small conv encoder for faces: per width, Conv3x3 -> relu -> 2x2 average pool;
  then flatten -> Dense(latent_dim) -> relu.

  Input float32[B, H, W, ch]; output float32[B, latent_dim]. `patches` (default)
  computes the convolutions and pools as matmuls and reshapes (`PatchConv`,
  `avg_pool_2x2`); False uses lax convolutions (nn.Conv, nn.avg_pool). Both
  have the same parameter tree and agree to float rounding.
  """
  latent_dim: int = 64
  channels: Sequence[int] = (16, 32)
  patches: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, width in enumerate(self.channels):
      if self.patches:
        x = avg_pool_2x2(nn.relu(PatchConv(width, name=f'Conv_{i}')(x)))
      else:
        x = nn.relu(nn.Conv(width, (3, 3), name=f'Conv_{i}')(x))
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
        channels: Sequence[int] = (16, 32), patches: bool = True) -> EncoderHead:
  """The small CNN: ConvEncoder + an MLP head with `hidden` widths."""
  return EncoderHead(ConvEncoder(latent_dim, tuple(channels), patches),
                     MLP(num_classes=num_classes, hidden=tuple(hidden)))


def with_lax_convs(model: EncoderHead) -> EncoderHead:
  """`model` (same parameters) with lax convolutions in its ConvEncoder.

  The faster form where the parameters are the same for every vmapped client
  (the incoming global model): then a convolution stays one plain convolution
  over all clients' images. Per-client parameters need the patch form.
  """
  if isinstance(model.encoder, ConvEncoder):
    return model._replace(encoder=model.encoder.clone(patches=False))
  return model


def flat_apply(apply_fn):
  """Wraps apply_fn(params, x[B, D]) to take x[B, ...] (flattened per row)."""
  return lambda params, x: apply_fn(params, x.reshape(x.shape[0], -1))
