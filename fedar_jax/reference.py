"""The slow reference round: a plain Python loop over clients and a NumPy server step.

The standard (MLP-path, Adam, cross-entropy) client update is rewritten here
independently of `client.py`: NumPy resampling for none/random_over/smote (the
engine's random draws, imbalanced-learn's rules) and a plain loop of optax Adam
steps in the engine's batch order. Custom clients (`spec.client_pipeline`, e.g.
latent resampling) and the other client losses/optimizers reuse the engine's
single-client function. The server step (aggregators and server optimizers)
is written here again, independently, in NumPy (float64), from the published
formulas. Everything runs at HIGHEST matmul precision (the oracle). The
vmapped round is tested against it.
"""
import functools

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax

from fedar_jax import client
from fedar_jax import metrics
from fedar_jax import fedar_round
from fedar_jax import pretraining
from fedar_jax import privacy
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


def make_reference_round(spec: fedar_round.RoundSpec, resample_every: str = 'round'):
  """Returns reference_step with the signature and results of `make_round`'s round_step.

  The NumPy server-optimizer state is kept by the returned function between calls
  (one reference run per function); the returned ServerState has opt_state None.
  resample_every='once': every round resamples again with the first round's
  resampling keys (the same rows every round), the oracle for `pretraining`.
  """
  once = resample_every == 'once'
  if once:
    pretraining.check_hoistable(spec)
  engine_update = jax.jit(
      lambda p, *args, **kw: fedar_round.local_update_fn(spec, p)(*args, **kw))
  if spec.client_pipeline is None:
    independent = functools.partial(reference_client_update, spec,
                                    engine_resample=jax.jit(spec.resampler.resample))
  evaluate = jax.jit(lambda p, x, y, m: metrics.evaluate(spec.apply_fn, p, x, y, m,
                                                         spec.num_classes))
  methods = spec.methods
  server_state = {}

  def reference_step(state, clients: ClientData, test: TestData, hparams: fedar_round.HParams):
    with jax.default_matmul_precision('highest'):
      return _step(state, clients, test, hparams)

  def _step(state, clients: ClientData, test: TestData, hparams: fedar_round.HParams):
    p = hparams.method_params()
    plain = (spec.client_pipeline is None and methods.loss == 'ce'
             and methods.client_optimizer == 'adam' and float(p.prox_mu) == 0)
    update = ((lambda _, *args, **kw: independent(*args, **kw)) if plain else engine_update)
    keys = fedar_round.client_keys(hparams.seed, state.round, clients.client_id)
    first_keys = fedar_round.client_keys(hparams.seed, 0, clients.client_id)
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
    dp_clip = None
    if methods.privacy != 'none':
      target, dp_clip = np_private_target(spec, state, clients, hparams, x, g)
      opt = server_state.get('opt', np_server_init(methods.server_optimizer, g, p))
      new, server_state['opt'] = np_server_update(methods.server_optimizer, g, target, opt, p)
      params = unravel(np.asarray(new, np.float32))
    elif weights.sum() > 0:  # Otherwise the model (and the optimizer state) stay as they were.
      target = np_aggregate(methods.aggregator, x, weights, g, p)
      opt = server_state.get('opt', np_server_init(methods.server_optimizer, g, p))
      new, server_state['opt'] = np_server_update(methods.server_optimizer, g, target, opt, p)
      params = unravel(np.asarray(new, np.float32))
    else:
      params = state.params
    params = jax.tree.map(np.asarray, params)
    stats = jax.tree.map(lambda *v: np.stack([np.asarray(a) for a in v]), *stats)
    evaluation = evaluate(params, test.x, test.y, test.mask)
    return (fedar_round.ServerState(params, state.round + 1, None, dp_clip),
            fedar_round.RoundOutput(evaluation, stats))

  return reference_step


def np_private_target(spec: fedar_round.RoundSpec, state, clients: ClientData,
                      hparams: fedar_round.HParams, x: np.ndarray, g: np.ndarray):
  """DP-FedAvg's target model and next adaptive clip norm (None for --dp=fixed), in float64
  from the formulas (McMahan et al. 2018; Andrew et al. 2021), with every client taking
  part (no sampling). x: float64[C, D] client models; g: float64[D] global model. The
  standard normal draws come from the engine's noise keys (privacy.noise_key), so the
  noise equals the compiled round's."""
  p = hparams.method_params()
  num = spec.num_clients or clients.x.shape[0]
  use = (np.asarray(clients.client_id) < num) & np.all(np.isfinite(x), axis=1)
  clip = float(state.dp_clip if state.dp_clip is not None else p.dp_clip_norm)
  delta = np.where(use[:, None], x - g, 0.0)
  norms = np.sqrt(np.sum(delta ** 2, axis=1))
  factor = np.minimum(1.0, clip / np.maximum(norms, np.finfo(np.float32).tiny))
  clipped = np.sum(delta[use] * factor[use, None], axis=0)
  key = privacy.noise_key(hparams.seed, state.round)
  z = np.asarray(ravel_pytree(privacy.gaussian_noise(privacy.update_noise_key(key),
                                                     state.params))[0], np.float64)
  m = spec.clients_per_round or num
  target = g + (clipped + float(p.dp_noise_multiplier) * clip * z) / m
  if state.dp_clip is None:
    return target, None
  count = np.sum(norms[use] <= clip) - 0.5 * np.sum(use)
  noise = float(jax.random.normal(privacy.count_noise_key(key), (), jnp.float32))
  below = np.clip((count + float(p.dp_clip_count_stddev) * noise) / m + 0.5, 0.0, 1.0)
  new_clip = clip * np.exp(-float(p.dp_clip_learning_rate) * (below - float(p.dp_target_quantile)))
  return target, np.float32(new_clip)


# --- Reference client update (independent of client.py) ---

def _np_counts(y, mask, num_classes):
  return np.bincount(y[mask], minlength=num_classes)


def _np_slot_plan(key, y, mask, num_classes, num_slots):
  """imbalanced-learn's 'auto' targets as a slot plan: slot j of the S synthetic slots
  belongs to the class whose deficit range holds j (classes in label order); its seed
  is class member floor(u_j * n_c) (members in row order), u = uniform(key, [S])."""
  counts = _np_counts(y, mask, num_classes)
  deficits = np.where(counts > 0, counts.max() - counts, 0)
  cls = np.repeat(np.arange(num_classes), deficits)[:num_slots]
  u = np.asarray(jax.random.uniform(key, (num_slots,)))
  seeds = []
  for j, c in enumerate(cls):
    members = np.flatnonzero(mask & (y == c))
    seeds.append(members[min(int(np.floor(u[j] * len(members))), len(members) - 1)])
  return cls, np.asarray(seeds, np.int64), counts, deficits


def _np_append(x, y, mask, num_slots, cls, new_x):
  s = len(cls)
  x_out = np.zeros((x.shape[0] + num_slots,) + x.shape[1:], x.dtype)
  x_out[:x.shape[0]] = x
  x_out[x.shape[0]:x.shape[0] + s] = new_x.reshape((s,) + x.shape[1:])
  y_out = np.concatenate([y, np.zeros(num_slots, y.dtype)])
  y_out[x.shape[0]:x.shape[0] + s] = cls
  m_out = np.concatenate([mask, np.arange(num_slots) < s])
  return x_out, y_out, m_out


def np_random_over(key, x, y, mask, *, num_classes, num_slots):
  """RandomOverSampler in NumPy with the engine's draws: copies of seed rows."""
  cls, seeds, _, _ = _np_slot_plan(key, y, mask, num_classes, num_slots)
  return (*_np_append(x, y, mask, num_slots, cls, x[seeds]), False)


def np_smote(key, x, y, mask, *, num_classes, num_slots, k_neighbors=5):
  """SMOTE in NumPy (float64 distances) with the engine's draws: seed row, one of its
  min(k, n_c - 1) nearest same-class rows uniformly, step U[0, 1); a 1-row class is
  copied. Falls back (True) where imbalanced-learn raises: a class to grow with <= k rows."""
  k_plan, k_new = jax.random.split(key)
  k_col, k_step = jax.random.split(k_new)
  cls, seeds, counts, deficits = _np_slot_plan(k_plan, y, mask, num_classes, num_slots)
  s = len(cls)
  u_col = np.asarray(jax.random.uniform(k_col, (num_slots,)))[:s]
  u_step = np.asarray(jax.random.uniform(k_step, (num_slots, 1)))[:s]
  flat = x.reshape(x.shape[0], -1).astype(np.float64)
  new = np.zeros((s, flat.shape[1]), np.float32)
  for j, (c, seed) in enumerate(zip(cls, seeds)):
    others = np.flatnonzero(mask & (y == c) & (np.arange(len(y)) != seed))
    d = np.sum((flat[others] - flat[seed]) ** 2, axis=1)
    near = others[np.argsort(d, kind='stable')[:k_neighbors]]
    if len(near) == 0:
      new[j] = x.reshape(x.shape[0], -1)[seed]
      continue
    nb = near[min(int(np.floor(u_col[j] * len(near))), len(near) - 1)]
    base = x.reshape(x.shape[0], -1)[seed]
    new[j] = base + u_step[j] * (x.reshape(x.shape[0], -1)[nb] - base)
  fell_back = bool(np.any((deficits > 0) & (counts <= k_neighbors)))
  return (*_np_append(x, y, mask, num_slots, cls, new), fell_back)


NUMPY_RESAMPLERS = {'random_over': np_random_over, 'smote': np_smote}


def _reference_resample(resampler, engine_resample, key, x, y, mask):
  """(x[M], y[M], mask[M], fell_back): NumPy for none/random_over/smote, else
  `engine_resample` (the jitted `resampler.resample`)."""
  if not resampler.resamples:
    return x, y, mask, False
  if resampler.name in NUMPY_RESAMPLERS:
    return NUMPY_RESAMPLERS[resampler.name](key, x, y, mask, **dict(resampler.bound))
  out = jax.device_get(engine_resample(key, x, y, mask))
  return (*out[:3], bool(out[3]))


def reference_client_update(spec: fedar_round.RoundSpec, params, key, x, y, mask, threshold,
                            learning_rate, engine_resample=None, resample_key=None):
  """FedAR on one client as a plain loop (the test oracle of `client.client_update` with
  the standard `client.fedar_client`).

  Resampling as `_reference_resample` iff IR = max / min present class count
  exceeds `threshold`; then `spec.local_epochs` epochs of optax Adam steps, one
  per batch of `spec.batch_size` rows, the rows in the engine's shuffle order
  (real rows by uniform(epoch key, [M']), padding last), batches without a real
  row skipped, loss the mean softmax cross-entropy of a batch's real rows.

  Args: params to learning_rate as `client.client_update` (x float32[N, ...], y int32[N],
    mask bool[N]);
    engine_resample: the (jitted) `spec.resampler.resample`, used for the
    samplers without a NumPy version. resample_key: if given, resampling uses
    its first half (`--resample_every=once`: the first round's key).

  Returns:
    (params, ClientStats) with NumPy leaves.
  """
  x, y, mask = np.asarray(x), np.asarray(y), np.asarray(mask)
  k_res, k_train = jax.random.split(key)
  if resample_key is not None:
    k_res, _ = jax.random.split(resample_key)
  counts = _np_counts(y, mask, spec.num_classes)
  present = counts[counts > 0]
  ir = np.float32(present.max()) / np.float32(present.min()) if len(present) else np.float32(1)
  fire = bool(ir > np.float32(threshold))
  xr, yr, mr, fell_back = _reference_resample(
      spec.resampler, engine_resample or jax.jit(spec.resampler.resample), k_res, x, y, mask)
  m = spec.resampler.capacity
  if not fire:
    xr = np.concatenate([x, np.zeros((m - x.shape[0],) + x.shape[1:], x.dtype)])
    yr = np.concatenate([y, np.zeros(m - len(y), y.dtype)])
    mr = np.concatenate([mask, np.zeros(m - len(mask), bool)])
  bs = spec.batch_size
  steps = -(-m // bs)
  pad = steps * bs - m
  xp = np.concatenate([xr, np.zeros((pad,) + xr.shape[1:], xr.dtype)])
  yp = np.concatenate([yr, np.zeros(pad, yr.dtype)])
  mp = np.concatenate([mr, np.zeros(pad, bool)])
  opt_state = optax.adam(learning_rate).init(params)
  step = _adam_step(spec.apply_fn)
  epoch_loss = 0.0
  for ekey in jax.random.split(k_train, spec.local_epochs):
    u = np.asarray(jax.random.uniform(ekey, (len(mp),)))
    order = np.argsort(np.where(mp, u, 2.0), kind='stable')
    losses = []
    for b in range(steps):
      idx = order[b * bs:(b + 1) * bs]
      if not mp[idx].any():
        continue
      params, opt_state, loss = step(params, opt_state, xp[idx], yp[idx], mp[idx],
                                     learning_rate)
      losses.append(float(loss))
    epoch_loss = float(np.mean(losses)) if losses else 0.0
  resampled = fire and spec.resampler.resamples
  stats = client.ClientStats(ir, np.bool_(resampled), np.int32(mask.sum()),
                             np.int32(mr.sum() if fire else mask.sum()),
                             np.float32(epoch_loss), np.bool_(resampled and fell_back))
  return jax.tree.map(np.asarray, params), stats


@functools.lru_cache(maxsize=None)
def _adam_step(apply_fn):
  """One jitted optax Adam step on a batch (learning rate traced)."""
  def loss_fn(p, xb, yb, mb):
    logp = jax.nn.log_softmax(apply_fn(p, xb))
    nll = -jnp.take_along_axis(logp, yb[:, None], axis=1)[:, 0]
    return jnp.sum(jnp.where(mb, nll, 0.0)) / jnp.sum(mb)

  @jax.jit
  def step(p, opt_state, xb, yb, mb, learning_rate):
    loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb, mb)
    updates, opt_state = optax.adam(learning_rate).update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss
  return step
