"""The slow reference round: a plain Python loop over clients and NumPy FedAvg.

Uses the same pure single-client function as the compiled round; the vmapped
round is tested against it.
"""
import functools

import jax
import numpy as np

from fedar_jax import client
from fedar_jax import metrics
from fedar_jax import round as round_lib
from fedar_jax.data.federated import ClientData, TestData


def make_reference_round(spec: round_lib.RoundSpec, resample_every: str = 'round'):
  """Returns reference_step with the signature and results of `make_round`'s round_step.

  resample_every='once': every round resamples again with the first round's
  resampling keys (the same rows every round), the oracle for `pretraining`.
  """
  once = resample_every == 'once'
  if once and spec.local_update is not None:
    raise ValueError('resample_every=once needs the standard client update')
  update = jax.jit(round_lib.local_update_fn(spec) if not once else functools.partial(
      client.client_update, spec.apply_fn, spec.resampler, spec.num_classes, spec.local_epochs,
      spec.batch_size))
  evaluate = jax.jit(lambda p, x, y, m: metrics.evaluate(spec.apply_fn, p, x, y, m,
                                                         spec.num_classes))

  def reference_step(state, clients: ClientData, test: TestData, hparams: round_lib.HParams):
    keys = round_lib.client_keys(hparams.seed, state.round, clients.client_id)
    first_keys = round_lib.client_keys(hparams.seed, 0, clients.client_id)
    results, stats = [], []
    for c in range(clients.x.shape[0]):
      extra = {'resample_key': first_keys[c]} if once else {}
      p, s = update(state.params, keys[c], clients.x[c], clients.y[c], clients.mask[c],
                    hparams.threshold, hparams.learning_rate, **extra)
      results.append(jax.tree.map(np.asarray, p))
      stats.append(s)
    weights = np.array([int(s.n_real) for s in stats], np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(stats), 1 / len(stats))
    params = jax.tree.map(lambda *leaves: np.tensordot(weights, np.stack(leaves), axes=1)
                          .astype(np.float32), *results)
    stats = jax.tree.map(lambda *v: np.stack([np.asarray(a) for a in v]), *stats)
    evaluation = evaluate(params, test.x, test.y, test.mask)
    return (round_lib.ServerState(params, state.round + 1),
            round_lib.RoundOutput(evaluation, stats))

  return reference_step
