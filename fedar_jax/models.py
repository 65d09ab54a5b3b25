"""Flax models."""
from typing import Sequence

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
