"""Small shared builders for tests."""
import jax
import jax.numpy as jnp
import numpy as np

from fedar_jax import models
from fedar_jax import resample
from fedar_jax import fedar_round
from fedar_jax import sharding
from fedar_jax.data import federated, synthetic


def unequal_clients(seed=0, sizes=(40, 25, 33, 12), num_classes=3, d=8, ratio=4.0):
  """Clients of unequal sizes (padded) plus a small balanced test set."""
  problem = synthetic.make_problem(seed, num_classes, d)
  rng = np.random.default_rng(seed)
  xs, ys = [], []
  for n in sizes:
    y = np.repeat(np.arange(num_classes), synthetic.imbalanced_counts(n, num_classes, ratio))
    y = rng.permutation(y).astype(np.int32)
    xs.append(problem.sample(y, rng))
    ys.append(y)
  y_test = np.repeat(np.arange(num_classes), 20).astype(np.int32)
  test = federated.TestData(problem.sample(y_test, rng), y_test, np.ones(len(y_test), bool))
  return federated.stack_clients(xs, ys), test


def small_spec(clients, num_classes=3, resampler='smote', epochs=2, batch_size=8):
  model = models.MLP(num_classes=num_classes, hidden=(6,))
  params = model.init(jax.random.key(0), jnp.asarray(clients.x[0, :1]))
  r = resample.make_resampler(resampler, num_classes=num_classes, capacity=clients.x.shape[1],
                              max_class_count=federated.max_class_count(clients, num_classes))
  spec = fedar_round.RoundSpec(model.apply, r, num_classes, epochs, batch_size)
  return spec, fedar_round.ServerState(params, jnp.int32(0))


def rounds_on_mesh(spec, clients, test, state, hp, devices, sweep_devices=1, rounds=2):
  """`rounds` rounds of fedar_round.make_round on a mesh of `devices` (`sweep_devices` of
  them on the sweep axis), the spec.num_clients clients padded to the mesh's slots.
  Returns (ServerState, the last round's output, client rows), on the devices."""
  mesh = sharding.make_mesh(devices, sweep_devices)
  spec = spec._replace(mesh=mesh)
  rows = fedar_round.data_rows(spec, spec.num_clients)
  data = sharding.shard_clients(
      federated.append_empty_clients(clients, rows, spec.num_clients), mesh)
  test, state, hp = sharding.replicate((test, state, hp), mesh)
  step = jax.jit(fedar_round.make_round(spec))
  for _ in range(rounds):
    state, out = step(state, data, test, hp)
  return state, out, rows
