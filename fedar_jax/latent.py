"""FedAR with resampling in a CNN's latent space: the client update for image models.

Images are never resampled; each round a client encodes its real images with
the incoming global encoder, runs the FedAR gate and the resampler on those
latent vectors, and trains on real + synthetic latents.

`joint`: the encoder and head both train. For a minibatch B drawn (Keras-like,
as `client.local_train`) from the client's resampled latent set,

    L(theta, phi) = 1/|B| * sum_{i in B} CE(head_phi(z_i), y_i),
    z_i = enc_theta(x_i)  if row i is one of the client's real images,
    z_i = s_i             if row i is synthetic (a constant: the resampler's
                          output from latents of the incoming encoder),

so the head learns from real and synthetic latents while the encoder's
gradient comes from real images only. `frozen`: the encoder is fixed (the
incoming global one, e.g. pretrained centrally); z_i = s_i for every row (real
latents from the fixed encoder, synthetic from the resampler), and only the
head trains, like the paper's encoded features. Padded rows weigh zero.
"""
from typing import Callable

import jax
import jax.numpy as jnp

from fedar_jax import client
from fedar_jax.models import EncoderHead
from fedar_jax.resample import Resampler
from fedar_jax.resample import gate

MODES = ('joint', 'frozen')


def make_latent_update(model: EncoderHead, resampler: Resampler, num_classes: int,
                       epochs: int, batch_size: int, mode: str) -> Callable:
  """The single-client latent-resampling update for `RoundSpec.local_update`.

  Returns:
    update(params, key, x[N, H, W, ch], y[N], mask[N], threshold, learning_rate)
    -> (params, ClientStats), the signature of `round.local_update_fn`.
  """
  if mode not in MODES:
    raise ValueError(f'unknown latent resampling mode {mode!r}; allowed: {", ".join(MODES)}')

  def update(params, key, x, y, mask, threshold, learning_rate):
    k_res, k_train = jax.random.split(key)
    z = jax.lax.stop_gradient(model.encode(params, x))
    counts = gate.class_counts(y, mask, num_classes)
    ir = gate.imbalance_ratio(counts)
    fire = gate.fedar_gate(ir, threshold)
    zs, ys, ms = gate.select(fire, resampler.fn(k_res, z, y, mask), (z, y, mask))
    if mode == 'frozen':
      def head_logits(head, zb):
        return model.classify({'encoder': params['encoder'], 'head': head}, zb)
      head, loss = client.local_train(head_logits, params['head'], k_train, zs, ys, ms,
                                      learning_rate=learning_rate, epochs=epochs,
                                      batch_size=batch_size)
      new_params = {'encoder': params['encoder'], 'head': head}
    else:
      row_logits, rows = joint_rows(model, x, z, zs)
      new_params, loss = client.local_train(row_logits, params, k_train, rows, ys, ms,
                                            learning_rate=learning_rate, epochs=epochs,
                                            batch_size=batch_size)
    stats = client.ClientStats(ir, fire, jnp.sum(mask).astype(jnp.int32),
                               jnp.sum(ms).astype(jnp.int32), loss)
    return new_params, stats

  return update


def joint_rows(model: EncoderHead, x: jax.Array, z: jax.Array, zs: jax.Array):
  """The `joint` loss's inputs: a logits function over row indices, and the rows.

  Args:
    x: float32[N, H, W, ch] the client's images; z: float32[N, L] their latents
    under the incoming encoder; zs: float32[M, L] the resampled latents (gated).

  Returns:
    (row_logits(params, rows[B, 1]) -> logits[B, K], rows float32[M, 1]).
    Row i < N that the resampler left in place (zs[i] == z[i]) is image i,
    encoded by the trained encoder; every other row is the constant zs[i].
  """
  n, m = x.shape[0], zs.shape[0]
  same = jnp.all(zs[:n] == z, axis=-1)
  live = jnp.concatenate([same, jnp.zeros((m - n,), bool)])

  def row_logits(params, rb):
    i = rb[:, 0].astype(jnp.int32)
    real = model.encode(params, x[jnp.minimum(i, n - 1)])
    return model.classify(params, jnp.where(live[i][:, None], real, zs[i]))

  return row_logits, jnp.arange(m, dtype=jnp.float32)[:, None]


def pretrain(model: EncoderHead, params, key, x, y, mask, *, learning_rate: float,
             epochs: int, batch_size: int):
  """Central training of the whole CNN on pooled rows x[T, H, W, ch], y[T], mask[T]
  (e.g. every client's real images) before a `frozen` run federates only the head.
  Returns the trained parameters."""
  train = jax.jit(lambda p, k, xx, yy, mm: client.local_train(
      model.apply, p, k, xx, yy, mm, learning_rate=learning_rate, epochs=epochs,
      batch_size=batch_size)[0])
  return train(params, key, x, y, mask)
