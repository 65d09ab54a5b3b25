"""The slow reference round: a plain Python loop over clients and a NumPy server step.

Uses the same pure single-client function as the compiled round; the vmapped
round is tested against it. The server step (aggregators and server
optimizers) is written here again, independently, in NumPy (float64), from the
published formulas.
"""
import jax
from jax.flatten_util import ravel_pytree
import numpy as np

from fedar_jax import metrics
from fedar_jax import round as round_lib
from fedar_jax.data.federated import ClientData, TestData


def np_aggregate(name: str, x: np.ndarray, w: np.ndarray, g: np.ndarray, p) -> np.ndarray:
  """Aggregate of the clients with w > 0 (brute force, per coordinate / per client).

  x: float[P, D] client models; w: float[P] weights; g: float[D] global model;
  p: MethodParams (numbers). Returns float64[D].
  """
  x, w, g = np.asarray(x, np.float64), np.asarray(w, np.float64), np.asarray(g, np.float64)
  used = x[w > 0]
  wu = w[w > 0]
  n = len(used)
  if name == 'mean':
    return wu @ used / wu.sum()
  if name == 'median':
    return np.median(used, axis=0)
  if name == 'trimmed_mean':
    k = int(np.floor(float(p.trim_fraction) * n))
    return np.array([np.sort(col)[k:n - k].mean() for col in used.T])
  if name in ('krum', 'multi_krum'):
    f = int(p.byzantine_clients)
    k = min(max(n - f - 2, 1), n - 1)
    scores = []
    for i in range(n):
      d = sorted(float(np.sum((used[i] - used[j]) ** 2)) for j in range(n) if j != i)
      scores.append(sum(d[:k]))
    order = np.argsort(scores, kind='stable')
    return used[order[0]] if name == 'krum' else used[order[:max(n - f, 1)]].mean(axis=0)
  if name == 'geometric_median':
    from fedar_jax import aggregate  # Only the iteration count and smoothing constant.
    z = wu @ used / wu.sum()
    for _ in range(aggregate.WEISZFELD_ITERS):
      beta = wu / np.maximum(np.linalg.norm(used - z, axis=1), aggregate.WEISZFELD_NU)
      z = beta @ used / beta.sum()
    return z
  if name == 'norm_clip':
    delta = used - g
    norms = np.linalg.norm(delta, axis=1)
    scale = np.minimum(1.0, float(p.clip_norm) / np.maximum(norms, 1e-12))
    return g + (wu * scale) @ delta / wu.sum()
  raise ValueError(name)


def np_server_init(name: str, g: np.ndarray, p) -> dict:
  """NumPy server optimizer state for a flat model g float[D]."""
  if name == 'fedavgm':
    return {'m': np.zeros_like(g, np.float64)}
  if name in ('fedadam', 'fedyogi', 'fedadagrad'):
    return {'m': np.zeros_like(g, np.float64),
            'v': np.full_like(g, float(p.server_tau) ** 2, np.float64)}
  return {}


def np_server_update(name: str, g: np.ndarray, target: np.ndarray, state: dict, p):
  """One server step (Reddi et al. 2021) with Delta = target - g; returns (model, state).

  fedavg: g + lr Delta. fedavgm (Hsu et al. 2019): m = momentum m - Delta, g - lr m.
  fedadagrad/fedadam/fedyogi (Algorithm 2): m = b1 m + (1 - b1) Delta, v as the paper,
  g + lr m / (sqrt(v) + tau).
  """
  lr, delta = float(p.server_learning_rate), np.asarray(target, np.float64) - g
  if name == 'fedavg':
    return g + lr * delta, state
  if name == 'fedavgm':
    m = float(p.server_momentum) * state['m'] - delta
    return g - lr * m, {'m': m}
  b1, b2, tau = float(p.server_beta1), float(p.server_beta2), float(p.server_tau)
  m = b1 * state['m'] + (1 - b1) * delta
  v, d2 = state['v'], delta ** 2
  if name == 'fedadagrad':
    v = v + d2
  elif name == 'fedadam':
    v = b2 * v + (1 - b2) * d2
  else:
    v = v - (1 - b2) * d2 * np.sign(v - d2)
  return g + lr * m / (np.sqrt(v) + tau), {'m': m, 'v': v}


def make_reference_round(spec: round_lib.RoundSpec, resample_every: str = 'round'):
  """Returns reference_step with the signature and results of `make_round`'s round_step.

  The NumPy server-optimizer state is kept by the returned function between calls
  (one reference run per function); the returned ServerState has opt_state None.
  resample_every='once': every round resamples again with the first round's
  resampling keys (the same rows every round), the oracle for `pretraining`.
  """
  once = resample_every == 'once'
  if once and spec.local_update is not None:
    raise ValueError('resample_every=once needs the standard client update')
  evaluate = jax.jit(lambda p, x, y, m: metrics.evaluate(spec.apply_fn, p, x, y, m,
                                                         spec.num_classes))
  update = jax.jit(lambda p, *args, **kw: round_lib.local_update_fn(spec, p)(*args, **kw))
  methods = spec.methods
  server_state = {}

  def reference_step(state, clients: ClientData, test: TestData, hparams: round_lib.HParams):
    p = hparams.method_params()
    keys = round_lib.client_keys(hparams.seed, state.round, clients.client_id)
    first_keys = round_lib.client_keys(hparams.seed, 0, clients.client_id)
    results, stats = [], []
    for c in range(clients.x.shape[0]):
      extra = {'resample_key': first_keys[c]} if once else {}
      q, s = update(p, state.params, keys[c], clients.x[c], clients.y[c], clients.mask[c],
                    hparams.threshold, hparams.learning_rate, **extra)
      results.append(jax.tree.map(np.asarray, q))
      stats.append(s)
    flat_g, unravel = ravel_pytree(state.params)
    x = np.stack([np.asarray(ravel_pytree(r)[0], np.float64) for r in results])
    weights = np.array([int(s.n_real) for s in stats], np.float64)
    g = np.asarray(flat_g, np.float64)
    if hparams.attackers is not None:  # Model replacement: g + scale * (client - g).
      attacker = np.asarray(hparams.attackers)[np.asarray(clients.client_id)]
      x[attacker] = g + float(p.attack_scale) * (x[attacker] - g)
    weights[~np.all(np.isfinite(x), axis=1)] = 0.0
    if weights.sum() > 0:  # Otherwise the model (and the optimizer state) stay as they were.
      target = np_aggregate(methods.aggregator, x, weights, g, p)
      opt = server_state.get('opt', np_server_init(methods.server_optimizer, g, p))
      new, server_state['opt'] = np_server_update(methods.server_optimizer, g, target, opt, p)
      params = unravel(np.asarray(new, np.float32))
    else:
      params = state.params
    params = jax.tree.map(np.asarray, params)
    stats = jax.tree.map(lambda *v: np.stack([np.asarray(a) for a in v]), *stats)
    evaluation = evaluate(params, test.x, test.y, test.mask)
    return (round_lib.ServerState(params, state.round + 1),
            round_lib.RoundOutput(evaluation, stats))

  return reference_step
