"""FedAR with resampling in a CNN's latent space: the client pair for image models.

Images are never resampled; each round a client encodes its real images with
the incoming global encoder, runs the FedAR gate and the resampler on those
latent vectors, and trains on real + synthetic latents.

`joint`: the encoder and head both train. For a minibatch B drawn (Keras-like,
as `client.local_train`) from the client's resampled set of M rows,

    L(theta, phi) = 1/|B| * sum_{i in B} CE(head_phi(z_i), y_i),
    z_i = sum_j w_ij enc_theta(x_j),

where w_i are row i's weights over the client's real images: w_i = e_i for
real image i; for a SMOTE row, (1 - u) at its seed and u at its neighbour
(the resampler's choices, made on latents of the incoming encoder). So only
real images are ever encoded (the encoder trains on real images; a synthetic
row reaches it through the images it interpolates), the head trains on real
and synthetic latents, and synthetic latents are recomputed with the current
encoder at every step instead of going stale. `frozen`: the encoder is fixed
(the incoming global one, e.g. pretrained centrally); z_i are the fixed
encoder's latents and the resampler's synthetic latents, and only the head
trains, like the paper's encoded features. Padded rows weigh zero.
"""

import jax
import jax.numpy as jnp

from fedar_jax import client
from fedar_jax import models
from fedar_jax.models import EncoderHead
from fedar_jax.resample import Resampler

MODES = ('joint', 'frozen')


def make_latent_client(model: EncoderHead, resampler: Resampler, num_classes: int,
                       epochs: int, batch_size: int, mode: str) -> client.ClientPipeline:
  """The latent-resampling client for `RoundSpec.client_pipeline`.

  prepare encodes the client's images with the incoming encoder and runs
  `client.prepare_client` on the latents (`frozen`) or on the latents with row
  ids (`joint`, `source_weights`); train trains the head on the gated latents
  (`frozen`) or the whole CNN on the images they are made of (`joint`). prepare
  reads the incoming parameters, so it is not hoistable (no `--resample_every=once`).
  """
  if mode not in MODES:
    raise ValueError(f'unknown latent resampling mode {mode!r}; allowed: {", ".join(MODES)}')
  # The incoming parameters are every client's: lax convolutions (one plain
  # convolution over all vmapped clients' images) encode them fastest. The
  # trained, per-client parameters use `model`'s form (patch matmuls).
  incoming = models.with_lax_convs(model)

  def prepare(params, key, x, y, mask, threshold):
    z = jax.lax.stop_gradient(incoming.encode(params, x))
    if mode == 'frozen':
      return client.prepare_client(resampler, num_classes, key, z, y, mask, threshold)
    (w, ys, ms), facts = source_weights(resampler, num_classes, key, z, y, mask, threshold)
    return ((x, w), ys, ms), facts

  def train(params, key, rows, facts, learning_rate):
    del facts  # The latent clients train with cross-entropy.
    if mode == 'frozen':
      def head_logits(head, zb):
        return incoming.classify({'encoder': params['encoder'], 'head': head}, zb)
      head, loss = client.local_train(head_logits, params['head'], key, *rows,
                                      learning_rate=learning_rate, epochs=epochs,
                                      batch_size=batch_size)
      return {'encoder': params['encoder'], 'head': head}, loss
    (x, w), ys, ms = rows
    row_latents, row_ids = joint_rows(model, x, w)
    return client.local_train(
        lambda p, rb: model.classify(p, row_latents(p, rb)), params, key, row_ids, ys, ms,
        learning_rate=learning_rate, epochs=epochs, batch_size=batch_size)

  return client.ClientPipeline(prepare, train, hoistable=False)


def source_weights(resampler: Resampler, num_classes: int, key: jax.Array, z: jax.Array,
                   y: jax.Array, mask: jax.Array, threshold: jax.Array):
  """The `joint` client's prepare on latents z[N, L]: which real rows every gated,
  resampled latent is made of.

  `client.prepare_client` runs on [z, I_N]: latents with a one-hot row id
  appended. The one-hot part adds the same squared distance (2) to every pair of
  distinct rows, so neighbour rankings, and thus the resampler's choices, are
  those it makes on z alone; and since SMOTE-family points are affine
  combinations of input rows, the one-hot part of an output row is its weights
  over the client's real rows (e_i for real row i, (1 - u) e_a + u e_b for SMOTE).

  Returns:
    ((w float32[M, N] source weights per row, y int32[M], mask bool[M]), ClientFacts);
    the identity rows where the gate does not fire.
  """
  n = z.shape[0]
  aug = jnp.concatenate([z, jnp.eye(n, dtype=z.dtype)], axis=-1)
  (out, ys, ms), facts = client.prepare_client(resampler, num_classes, key, aug, y, mask,
                                               threshold)
  return (out[:, z.shape[1]:], ys, ms), facts


def joint_rows(model: EncoderHead, x: jax.Array, w: jax.Array):
  """The `joint` loss's inputs: row latents under the current encoder, and the rows.

  Every resampled row i is rebuilt from its (at most) two largest source
  weights, z_i = a_i enc(x[p_i]) + b_i enc(x[q_i]) with the encoder being
  trained (exact for SMOTE-family points and copies).

  Args:
    x: float32[N, H, W, ch] the client's images; w: float32[M, N] source
      weights (`source_weights`).

  Returns:
    (row_latents(params, rows[B, 1]) -> float32[B, L], rows float32[M, 1]).
  """
  m = w.shape[0]
  val, idx = jax.lax.top_k(w, 2)
  total = jnp.sum(val, axis=-1, keepdims=True)
  val = val / jnp.where(total > 0, total, 1.0)

  def row_latents(params, rb):
    i = rb[:, 0].astype(jnp.int32)
    both = model.encode(params, x[jnp.concatenate([idx[i, 0], idx[i, 1]])])
    za, zb = jnp.split(both, 2)
    return val[i, :1] * za + val[i, 1:] * zb

  return row_latents, jnp.arange(m, dtype=jnp.float32)[:, None]


def pretrain(model: EncoderHead, params, key, x, y, mask, *, learning_rate: float,
             epochs: int, batch_size: int):
  """Central training of the whole CNN on pooled rows x[T, H, W, ch], y[T], mask[T]
  (e.g. every client's real images) before a `frozen` run federates only the head.
  Returns the trained parameters."""
  train = jax.jit(lambda p, k, xx, yy, mm: client.local_train(
      model.apply, p, k, xx, yy, mm, learning_rate=learning_rate, epochs=epochs,
      batch_size=batch_size)[0])
  return train(params, key, x, y, mask)
