import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedar_jax import client, latent, models, pretraining, reference, resample
from fedar_jax import fedar_round
from fedar_jax.data import federated
from fedar_jax.data.pattern_faces import pattern_faces

K = 2


def image_clients(sizes=(20, 13, 17), side=8, seed=0):
  rng = np.random.default_rng(seed)
  xs, ys = [], []
  for n in sizes:
    y = np.array([0] * (n - n // 4) + [1] * (n // 4), np.int32)
    xs.append(pattern_faces(rng, y, K, side)[..., None] / 255.0)
    ys.append(y)
  y_test = np.repeat(np.arange(K), 6).astype(np.int32)
  test = federated.TestData((pattern_faces(rng, y_test, K, side)[..., None] / 255.0)
                            .astype(np.float32), y_test, np.ones(len(y_test), bool))
  return federated.stack_clients(xs, ys), test


def latent_spec(clients, mode, resampler='smote', epochs=2, batch_size=8):
  model = models.cnn(K, (), latent_dim=4, channels=(3,))
  params = model.init(jax.random.key(0), jnp.asarray(clients.x[0, :1]))
  r = resample.make_resampler(resampler, num_classes=K, capacity=clients.x.shape[1],
                              max_class_count=federated.max_class_count(clients, K),
                              k_neighbors=3)
  latent_client = latent.make_latent_client(model, r, K, epochs, batch_size, mode)
  spec = fedar_round.RoundSpec(model.apply, r, K, epochs, batch_size, latent_client)
  return model, spec, fedar_round.ServerState(params, jnp.int32(0))


@pytest.mark.parametrize('mode', ['joint', 'frozen'])
def test_vmapped_latent_round_equals_reference_loop(mode):
  clients, test = image_clients()
  _, spec, state = latent_spec(clients, mode)
  hp = fedar_round.HParams.create(threshold=1.5, learning_rate=0.02, seed=1)
  fast = jax.jit(fedar_round.make_round(spec))
  slow = reference.make_reference_round(spec)
  s_fast, o_fast = fast(state, clients, test, hp)
  s_slow, o_slow = slow(state, clients, test, hp)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0),
               s_fast.params, s_slow.params)
  np.testing.assert_array_equal(o_fast.clients.n_train, o_slow.clients.n_train)
  assert np.all(o_fast.clients.resampled)
  assert np.all(o_fast.clients.n_train > clients.mask.sum(1))  # synthetic latents were added
  moved = lambda part: not np.allclose(jax.tree.leaves(s_fast.params[part])[0],
                                       jax.tree.leaves(state.params[part])[0])
  assert moved('head')
  assert moved('encoder') == (mode == 'joint')


@pytest.mark.parametrize('mode', ['joint', 'frozen'])
def test_latent_clients_cannot_prepare_once(mode):
  # Their prepare encodes with the incoming global encoder: it cannot run before training.
  clients, _ = image_clients(sizes=(8,))
  _, spec, _ = latent_spec(clients, mode)
  assert not fedar_round.client_pipeline(spec).hoistable
  assert fedar_round.client_pipeline(spec._replace(client_pipeline=None)).hoistable
  with pytest.raises(ValueError, match='resampling once needs a client whose prepare'):
    pretraining.make_prepare_clients(spec)
  with pytest.raises(ValueError, match='resampling once needs a client whose prepare'):
    reference.make_reference_round(spec, resample_every='once')


def test_joint_without_resampling_is_plain_cnn_training():
  # With the gate closed every row is a real image, so the latent update must
  # equal the standard client update of the whole CNN on the images.
  clients, _ = image_clients()
  model, spec, state = latent_spec(clients, 'joint')
  args = (state.params, jax.random.key(5), clients.x[0], clients.y[0], clients.mask[0],
          jnp.float32(100.0), jnp.float32(0.02))
  p_latent, s_latent = jax.jit(fedar_round.local_update_fn(spec))(*args)
  pixel_resampler = spec.resampler  # resamples images as vectors: same capacity M, same shuffles
  plain = functools.partial(client.client_update,
                            client.fedar_client(model.apply, pixel_resampler, K, 2, 8))
  p_plain, s_plain = jax.jit(plain)(*args)
  assert not bool(s_latent.resampled)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), p_latent, p_plain)
  np.testing.assert_allclose(s_latent.loss, s_plain.loss, rtol=1e-5)


def test_frozen_is_head_training_on_fixed_latents():
  # frozen = the standard FedAR client update of the head on latents of the fixed encoder.
  clients, _ = image_clients()
  model, spec, state = latent_spec(clients, 'frozen')
  args = (jax.random.key(5), clients.x[1], clients.y[1], clients.mask[1], jnp.float32(1.5),
          jnp.float32(0.02))
  p_latent, s_latent = jax.jit(fedar_round.local_update_fn(spec))(state.params, *args)
  z = model.encode(state.params, clients.x[1])
  head_apply = lambda head, zb: model.classify({'head': head}, zb)
  head_client = client.fedar_client(head_apply, spec.resampler, K, 2, 8)
  head, s_head = jax.jit(functools.partial(client.client_update, head_client))(
      state.params['head'], args[0], z, *args[2:])
  assert bool(s_latent.resampled)
  jax.tree.map(np.testing.assert_array_equal, p_latent['encoder'], state.params['encoder'])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), p_latent['head'], head)


def test_joint_latents_rebuild_the_resampled_ones_and_follow_the_encoder():
  clients, _ = image_clients(sizes=(16,))
  model, spec, state = latent_spec(clients, 'joint')
  x, y, m = jnp.asarray(clients.x[0]), jnp.asarray(clients.y[0]), jnp.asarray(clients.mask[0])
  key = jax.random.key(0)
  z = model.encode(state.params, x)
  zs, ys, ms, _ = spec.resampler.resample(key, z, y, m)
  (w, ys_w, ms_w), facts = latent.source_weights(spec.resampler, K, key, z, y, m,
                                                 jnp.float32(1.0))
  assert bool(facts.resampled)  # IR 3 > 1: the gate fired.
  np.testing.assert_array_equal(ys_w, ys)
  np.testing.assert_array_equal(ms_w, ms)
  assert int(ms.sum()) > int(m.sum())
  # Real rows are e_i; SMOTE rows have two weights summing to 1.
  np.testing.assert_allclose(w[:len(m)][m], np.eye(len(m))[np.asarray(m)], atol=1e-6)
  np.testing.assert_allclose(w[ms].sum(-1), 1.0, atol=1e-5)
  assert ((w[ms] > 1e-6).sum(-1) <= 2).all()
  row_latents, rows = latent.joint_rows(model, x, w)
  # Under the incoming encoder the rebuilt latents are exactly the resampler's
  # (the one-hot columns neither changed its choices nor lost the weights).
  np.testing.assert_allclose(row_latents(state.params, rows)[ms], zs[ms], atol=1e-5)
  # The loss and its gradient are those of latents w @ enc(x) of all real images.
  loss = lambda p: client.masked_cross_entropy(model.classify(p, row_latents(p, rows)), ys, ms)
  ref = lambda p: client.masked_cross_entropy(model.classify(p, w @ model.encode(p, x)), ys, ms)
  np.testing.assert_allclose(loss(state.params), ref(state.params), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               jax.grad(loss)(state.params), jax.grad(ref)(state.params))
  # Synthetic latents follow the current encoder (they do not go stale).
  moved = jax.tree.map(lambda a: a + 0.1, state.params)
  synth = np.asarray(ms) & (np.arange(len(ms)) >= len(m))
  live = row_latents(moved, rows)[synth]
  assert not np.allclose(live, zs[synth], atol=1e-3)
  np.testing.assert_allclose(live, (w @ model.encode(moved, x))[synth], atol=1e-4)


def test_pretrain_fits_the_pooled_images():
  clients, _ = image_clients(sizes=(24,))
  model, _, state = latent_spec(clients, 'frozen')
  x, y, m = clients.x[0], clients.y[0], clients.mask[0]
  params = latent.pretrain(model, state.params, jax.random.key(0), x, y, m, learning_rate=0.05,
                           epochs=15, batch_size=8)
  before = client.masked_cross_entropy(model.apply(state.params, x), y, m)
  after = client.masked_cross_entropy(model.apply(params, x), y, m)
  assert float(after) < 0.7 * float(before)


def test_latent_round_in_blocks_of_one_equals_vmapped():
  # The automatic client block of a CNN on CPU (train.auto_client_block) runs
  # one client at a time; the result must be the vmapped round's.
  clients, test = image_clients()
  _, spec, state = latent_spec(clients, 'joint', epochs=1)
  hp = fedar_round.HParams.create(threshold=1.5, learning_rate=0.02, seed=1)
  vmapped = jax.jit(fedar_round.make_round(spec))(state, clients, test, hp)
  blocked = jax.jit(fedar_round.make_round(spec._replace(client_block=1)))(state, clients, test, hp)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0),
               blocked[0].params, vmapped[0].params)
  np.testing.assert_array_equal(blocked[1].clients.n_train, vmapped[1].clients.n_train)


def test_auto_client_block_rule():
  from fedar_jax import train
  from fedar_jax.config import RunConfig
  cnn = RunConfig(model='cnn', dataset='fer2013')
  assert train.auto_client_block(cnn, 'cpu') == train.CPU_CNN_CLIENT_BLOCK == 1
  assert train.auto_client_block(cnn, 'gpu') == 0
  assert train.auto_client_block(cnn, 'tpu') == 0
  assert train.auto_client_block(RunConfig(), 'cpu') == 0
  many = RunConfig(num_clients=train.CPU_MLP_CLIENT_BLOCK + 1)
  assert train.auto_client_block(many, 'cpu') == train.CPU_MLP_CLIENT_BLOCK == 25
  assert train.auto_client_block(many, 'gpu') == 0
  assert train.auto_client_block(many.replace(clients_per_round=25), 'cpu') == 0
  assert train.auto_client_block(cnn.replace(client_block=4), 'cpu') == 4
  assert train.auto_client_block(RunConfig(client_block=3), 'gpu') == 3
