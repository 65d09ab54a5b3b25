"""The client axis sharded over 8 (forced host) devices gives the results of 1 device.

Runs in a subprocess because the device count is fixed when JAX starts.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np

from fedar_jax.data import federated

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
    import os
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
    import jax
    import jax.numpy as jnp
    import numpy as np
    from fedar_jax import fedar_round
    from fedar_jax import pretraining
    from fedar_jax import sharding
    from fedar_jax.data import federated
    from tests import helpers

    assert jax.device_count() == 8, jax.devices()
    C = 12
    clients, test = helpers.unequal_clients(sizes=(40, 25, 33, 12, 30, 18, 27, 22, 35, 16, 29, 21))
    spec, state = helpers.small_spec(clients, epochs=1)
    hp = fedar_round.HParams.create(threshold=1.5, learning_rate=0.01, seed=3)

    def run(devices, sweep_devices=1, **scale):
      st, out, rows = helpers.rounds_on_mesh(spec._replace(num_clients=C, **scale), clients,
                                             test, state, hp, devices, sweep_devices)
      spread = len(out.clients.n_real.sharding.device_set)
      return sharding.fetch(st.params), sharding.fetch(out), spread, rows

    def close(a, b):
      jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-5, rtol=0), a, b)

    devices = jax.devices()
    p1, o1, n1, _ = run(devices[:1])
    # 12 clients on 8 devices in blocks of 4 -> 2 blocks of 8 slots (4 of them padding).
    p8, o8, n8, rows8 = run(devices, client_block=4)
    assert (n1, n8, rows8) == (1, 8, 16), (n1, n8, rows8)
    close(p8, p1)
    real = o8.client_index >= 0
    np.testing.assert_array_equal(o8.client_index[real], o1.client_index)
    np.testing.assert_array_equal(o8.clients.resampled[real], o1.clients.resampled)
    np.testing.assert_array_equal(o8.metrics['confusion'], o1.metrics['confusion'])

    # The pre-training step runs in the round's blocks on the round's mesh: 8 devices in
    # blocks of 4 prepare every client as 1 device does, and its rows stay sharded.
    def prepare_clients(devices, **scale):
      mesh = sharding.make_mesh(devices)
      s = spec._replace(num_clients=C, mesh=mesh, **scale)
      data = sharding.shard_clients(
          federated.append_empty_clients(clients, fedar_round.data_rows(s, C), C), mesh)
      out = jax.jit(pretraining.make_prepare_clients(s))(data, sharding.replicate(hp, mesh))
      spread = len(out.x.x.sharding.device_set)
      return jax.tree.map(lambda a: a[:C], sharding.fetch(out)), spread
    (q1, _), (q8, spread8) = prepare_clients(devices[:1]), prepare_clients(devices, client_block=4)
    assert spread8 == 8, spread8
    np.testing.assert_array_equal(q8.mask, q1.mask)
    jax.tree.map(np.testing.assert_array_equal, q8.x.facts, q1.x.facts)
    np.testing.assert_allclose(q8.x.x, q1.x.x, atol=1e-5, rtol=0)

    ps1, os1, _, _ = run(devices[:1], clients_per_round=6)
    ps8, os8, _, _ = run(devices, clients_per_round=6, client_block=4)
    close(ps8, ps1)
    np.testing.assert_array_equal(os8.client_index[os8.client_index >= 0], os1.client_index)
    assert not np.allclose(jax.tree.leaves(ps1)[0], jax.tree.leaves(p1)[0])

    # A sweep axis (S = 2 points) sharded over 2 x 4 devices, vmapped with spmd_axis_name.
    mesh = sharding.make_mesh(devices, sweep_devices=2)
    s = spec._replace(num_clients=C, mesh=mesh)
    rows = fedar_round.data_rows(s, C)
    data = sharding.shard_clients(federated.append_empty_clients(clients, rows, C), mesh)
    t = sharding.replicate(test, mesh)
    stack = lambda *v: np.stack([np.asarray(a) for a in v])
    sweep_hp = fedar_round.HParams(np.float32([1.5, 100.0]), np.float32([0.01, 0.01]),
                                 np.int32([3, 3]))
    st, h = sharding.shard_leading((jax.tree.map(stack, state, state), sweep_hp), mesh)
    step = jax.jit(jax.vmap(fedar_round.make_round(s), in_axes=(0, None, None, 0),
                            spmd_axis_name=sharding.SWEEP))
    for _ in range(2):
      st, out = step(st, data, t, h)
    ps = sharding.fetch(st.params)
    close(jax.tree.map(lambda a: a[0], ps), p1)
    assert not np.allclose(jax.tree.leaves(ps)[0][1], jax.tree.leaves(p1)[0])
    print('SHARDING-OK')
''')


def test_eight_devices_equal_one_device():
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0 and 'SHARDING-OK' in proc.stdout, proc.stderr[-4000:]


def test_append_empty_clients_with_fresh_ids():
  data = federated.stack_clients([np.ones((3, 2)), np.ones((2, 2))], [np.zeros(3), np.ones(2)])
  padded = federated.append_empty_clients(data, 5, first_id=2)
  assert padded.x.shape == (5, 3, 2)
  np.testing.assert_array_equal(padded.client_id, [0, 1, 2, 3, 4])
  assert not padded.mask[2:].any() and padded.mask[:2].any()
  assert federated.append_empty_clients(data, 2, first_id=2) is data
