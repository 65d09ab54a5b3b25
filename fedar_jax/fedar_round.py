"""The FedAR round: one pure function, jitted once.

round_step(state, clients, test, hparams):
  1. every client (vmap): key from (seed, round, client_id), pre-training
     check, gated resampling, local training (--client_optimizer, --loss,
     --prox_mu) from the global parameters;
  2. the server step (server.py: an aggregator, FedAvg's weighted mean by
     default, then a server optimizer) over the clients' models weighted by
     real sample counts, leaving out clients whose update is not finite
     (counted in metrics['dropped_clients']); with --dp (privacy.py) each update is
     clipped, their sum noised and divided by the expected cohort size first;
  3. evaluation of the new global model on the balanced test set, and with
     `eval_clients` on E clients sampled on their own key stream, each on its own
     rows (`metrics.evaluate_clients`: metrics['client_gmean'] and
     metrics['client_minority_recall'], float32[E]).
Hyperparameters that only change numbers (threshold, learning rate, seed, the
methods' parameters in HParams.methods) are traced, so changing them never
recompiles.

Scale (static, in RoundSpec): `clients_per_round` samples that many clients
per round (keys from (seed, round)); `client_block` runs the clients in
blocks (lax.scan over blocks, vmap inside one) with an exact running FedAvg
sum; `mesh` shards the client axis over devices (both: for_each_client.py).
"""
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from fedar_jax import aggregate
from fedar_jax import client
from fedar_jax import for_each_client
from fedar_jax import metrics
from fedar_jax import precision
from fedar_jax import privacy
from fedar_jax import sampling
from fedar_jax import server
from fedar_jax import sharding
from fedar_jax.config import ConfigError
from fedar_jax.methods import Methods, MethodParams
from fedar_jax.methods import registry
from fedar_jax.data.federated import ClientData, TestData
from fedar_jax.resample import Resampler


class HParams(NamedTuple):
  """Traced per-run scalars: threshold float32, learning_rate float32, seed int32;
  methods: the methods' numeric parameters (None: MethodParams defaults);
  attackers: bool[rows], one per row of the round's ClientData (like its y and
  mask): whose update is scaled by methods.attack_scale (--attack=scale; None:
  no scaling). A sampled round takes the sampled rows' entries."""
  threshold: jax.Array
  learning_rate: jax.Array
  seed: jax.Array
  methods: MethodParams | None = None
  attackers: jax.Array | None = None

  @classmethod
  def create(cls, threshold: float, learning_rate: float, seed: int,
             methods: MethodParams | None = None, attackers=None) -> 'HParams':
    return cls(jnp.float32(threshold), jnp.float32(learning_rate), jnp.int32(seed), methods,
               None if attackers is None else jnp.asarray(attackers, bool))

  def method_params(self) -> MethodParams:
    return self.methods if self.methods is not None else MethodParams.create()


class ServerState(NamedTuple):
  """Global model parameters, the number of rounds done (int32), the server
  optimizer's state (None for a stateless one, e.g. fedavg) and the adaptive DP clip
  norm (float32, --dp=adaptive; None otherwise)."""
  params: object
  round: jax.Array
  opt_state: object = None
  dp_clip: jax.Array | None = None


class RoundOutput(NamedTuple):
  """metrics: `metrics.evaluate`'s dict for the new global model, plus
  `dropped_clients` (int32, participating clients left out for a non-finite update).
  clients: ClientStats with a leading slot axis [P] (P = C without sampling).
  client_index: int32[P], the client id of each slot, -1 for padding slots
  (None from the reference round)."""
  metrics: dict
  clients: client.ClientStats
  client_index: jax.Array | None = None


class RoundSpec(NamedTuple):
  """Everything static about a round (changing any of it recompiles).

  apply_fn: (params, x[B, ...]) -> logits[B, K]. resampler: client-side
  resampler. num_classes: K. local_epochs, batch_size: local training.
  num_clients: real clients C (the data may hold extra empty padding rows
  after them); 0 means every data row is a real client.
  clients_per_round: clients sampled per round; 0 means all C.
  client_block: clients per block (rounded up to a multiple of the mesh's
  client devices); 0 means one block. mesh: shards the client axis (None: no
  sharding constraints). client_sampling: 'uniform' (exactly clients_per_round) or
  'poisson' (clients_per_round expected, in `cohort_slots` slots).
  client_pipeline: a custom client (`client.ClientPipeline`, e.g.
  `latent.make_latent_client`); None is the standard `client.fedar_client` of
  the fields above and the methods' client loss and optimizer.
  methods: the server optimizer, aggregator, client loss, client optimizer and the DP
  mechanism (privacy.py).
  trains_prepared: the clients' x holds `client.PreparedRows` (prepared once
  before training, `--resample_every=once`): the clients only train.
  matmul_precision: the `precision.PRECISIONS` entry the round is traced under.
  local_kernel: the standard client's local training: 'xla' (`client.local_train`) or
  'pallas' (`local_kernel.local_train`, one fused kernel per client; the MLP with the ce
  loss and adam only).
  eval_clients: E, clients the new global model is also evaluated on, each on its own
  rows, every round (0: none). They are sampled from all C with keys from (seed, round)
  on `sampling.EVAL_STREAM`, apart from the training cohort's.
  """
  apply_fn: Callable
  resampler: Resampler
  num_classes: int
  local_epochs: int
  batch_size: int
  client_pipeline: client.ClientPipeline | None = None
  methods: Methods = Methods()
  trains_prepared: bool = False
  # --- Scale ---
  num_clients: int = 0
  clients_per_round: int = 0
  client_block: int = 0
  mesh: Mesh | None = None
  client_sampling: str = 'uniform'
  # --- Numerics ---
  matmul_precision: str = 'default'
  local_kernel: str = 'xla'
  # --- Evaluation ---
  eval_clients: int = 0


class ClientLayout(NamedTuple):
  """How a round lays out its clients: RoundSpec's scale fields alone (same names and
  meanings), enough for `slot_layout` and `data_rows` before the model exists."""
  num_clients: int = 0
  clients_per_round: int = 0
  client_block: int = 0
  mesh: Mesh | None = None
  client_sampling: str = 'uniform'


def cohort_slots(spec: RoundSpec | ClientLayout, num_clients: int) -> int:
  """The client slots a round's cohort fills: clients_per_round (all C without sampling),
  or with Poisson sampling the static size its cohort overflows with probability at most
  `sampling.POISSON_OVERFLOW` (`sampling.poisson_capacity`)."""
  if spec.clients_per_round and spec.client_sampling == 'poisson':
    return sampling.poisson_capacity(num_clients, spec.clients_per_round)
  return spec.clients_per_round or num_clients


def slot_layout(spec: RoundSpec | ClientLayout, num_clients: int) -> tuple[int, int]:
  """(num_blocks, block_size) of a round's client slots for C = `num_clients`."""
  slots = cohort_slots(spec, num_clients)
  return for_each_client.block_layout(slots, spec.client_block,
                                      sharding.client_devices(spec.mesh))


def data_rows(spec: RoundSpec | ClientLayout, num_clients: int) -> int:
  """Rows the ClientData must have for C real clients (the rest empty padding)."""
  if spec.clients_per_round:
    return for_each_client.round_up(num_clients, sharding.client_devices(spec.mesh))
  blocks, size = slot_layout(spec, num_clients)
  return blocks * size


def client_keys(seed: jax.Array, round_index: jax.Array, client_id: jax.Array) -> jax.Array:
  """PRNG keys folded from (seed, round, client): key[C] for client_id[C]."""
  round_key = jax.random.fold_in(jax.random.key(seed), round_index)
  return jax.vmap(lambda c: jax.random.fold_in(round_key, c))(client_id)


def client_pipeline(spec: RoundSpec,
                    method_params: MethodParams | None = None) -> client.ClientPipeline:
  """The round's client pair: `spec.client_pipeline`, or the standard FedAR client with
  the spec's client loss and optimizer parameterised by `method_params` (traced)."""
  if spec.local_kernel == 'pallas':
    return pallas_client(spec)
  if spec.client_pipeline is not None:
    return spec.client_pipeline
  local = client.LocalMethod(spec.methods.loss, spec.methods.client_optimizer,
                             method_params if method_params is not None
                             else MethodParams.create())
  return client.fedar_client(spec.apply_fn, spec.resampler, spec.num_classes, spec.local_epochs,
                             spec.batch_size, local)


def pallas_client(spec: RoundSpec) -> client.ClientPipeline:
  """The standard FedAR client with its local training in the fused Pallas kernel
  (`local_kernel.train_fn`): the MLP with the ce loss and adam, without FedProx (the
  traced prox_mu is the config's, refused unless 0 by `config.validate`). On a GPU the
  client axis must be on one device (a mesh of several raises ConfigError: the kernel's
  Triton call is not partitioned); a CPU's interpret mode runs on any mesh."""
  from fedar_jax import local_kernel  # Pallas loads only for the runs that use it.
  if (spec.client_pipeline is not None or spec.methods.loss != 'ce'
      or spec.methods.client_optimizer != 'adam'):
    raise ValueError(f'the pallas local kernel trains the standard MLP client with the ce loss '
                     f'and adam, not loss={spec.methods.loss}, client_optimizer='
                     f'{spec.methods.client_optimizer}, client_pipeline={spec.client_pipeline}')
  devices = sharding.client_devices(spec.mesh)
  if devices > 1 and jax.default_backend() != 'cpu':
    raise ConfigError('local_kernel', f'pallas runs on one device: its Triton call is not '
                      f'split over the {devices} devices of the client mesh; use '
                      f'--local_kernel=xla')
  standard = client.fedar_client(spec.apply_fn, spec.resampler, spec.num_classes,
                                 spec.local_epochs, spec.batch_size)
  return standard._replace(train=local_kernel.train_fn(spec.local_epochs, spec.batch_size))


def local_update_fn(spec: RoundSpec, method_params: MethodParams | None = None) -> Callable:
  """The round's single-client update (params, key, x, y, mask, threshold, lr) ->
  (params, ClientStats): `client.client_update` of `client_pipeline(spec, method_params)`
  (which also takes a `resample_key`), or `client.train_prepared` on prepared rows x
  (`spec.trains_prepared`)."""
  pipeline = client_pipeline(spec, method_params)
  if spec.trains_prepared:
    def train_only(params, key, prepared, y, mask, threshold, learning_rate):
      del threshold  # The gate ran in the pre-training step.
      return client.train_prepared(pipeline, params, key, prepared, y, mask, learning_rate)
    return train_only
  return functools.partial(client.client_update, pipeline)


class ClientResults(NamedTuple):
  """Every client slot's update, summed for the server step.

  param_sum: float32 pytree, the sum of weight * client parameters over used clients.
  weight: float32 scalar, the summed weight. stats: ClientStats, [P] leaves in slot
  order. finite: bool[P], the client's update was finite. weights: float32[P], each
  slot's weight (0: not counted). client_params: [P, ...] leaves in slot order (robust
  aggregators need every client's model), else None. With a DP clip norm: param_sum
  is the sum of the used clients' clipped updates (client - global), each weighing 1,
  and unclipped the float32 `privacy.centered_unclipped` sum (else None).
  """
  param_sum: object
  weight: jax.Array
  stats: client.ClientStats
  finite: jax.Array
  weights: jax.Array
  client_params: object = None
  unclipped: jax.Array | None = None


class _Slot(NamedTuple):
  """One client slot's inputs to the round's update ([P] / [B] leading with blocks)."""
  key: jax.Array
  x: object
  y: jax.Array
  mask: jax.Array
  active: jax.Array
  scale: jax.Array | None = None


def run_clients(update: Callable, params, keys, data: ClientData, active, threshold,
                learning_rate, *, num_blocks: int, mesh=None, keep_params: bool = False,
                update_scale: jax.Array | None = None,
                dp_clip: jax.Array | None = None) -> ClientResults:
  """Every slot's update (`for_each_client.run`), aggregated into a weighted sum.

  Args:
    update: `local_update_fn`'s (params, key, x, y, mask, threshold, lr) -> (params, stats).
    params: global parameters (every client's incoming model).
    keys: PRNG keys [P]; data: ClientData [P, ...], the round's slots.
    active: bool[P]; inactive slots (padding, unsampled) get weight 0.
    threshold, learning_rate: traced scalars.
    num_blocks, mesh: the slots' blocks and mesh (static).
    keep_params: static; also return every slot's client model.
    update_scale: float32[P] or None; a slot whose scale s is not 1 sends
      params + s * (its model - params) (a model-replacement attacker).
    dp_clip: float32 scalar or None; DP: sum each used client's update clipped to this
      L2 norm, weight 1 each (`privacy.clipped_sum`), instead of the weighted models.

  Returns:
    ClientResults. A client is left out of the sum (weight 0) when inactive or
    when any of its updated parameters is NaN/inf.
  """
  def update_slot(slot: _Slot):
    return update(params, slot.key, slot.x, slot.y, slot.mask, threshold, learning_rate)

  def block_sum(block: _Slot, outs):
    client_params, stats = outs
    if block.scale is not None:
      def scaled(q, g):
        s = block.scale.reshape((-1,) + (1,) * (q.ndim - 1))
        return jnp.where(s != 1, g + s * (q - g), q).astype(q.dtype)
      client_params = jax.tree.map(scaled, client_params, params)
    finite = aggregate.finite_updates(client_params)
    per_slot = client_params if keep_params else None
    if dp_clip is not None:
      use = block.active & finite
      weight = use.astype(jnp.float32)
      clipped, norms = privacy.clipped_sum(client_params, params, use, dp_clip)
      return ((clipped, jnp.sum(weight), privacy.centered_unclipped(norms, use, dp_clip)),
              (stats, finite, weight, per_slot))
    weight = jnp.where(block.active & finite, stats.n_real, 0).astype(jnp.float32)
    return ((aggregate.weighted_sum(client_params, weight), jnp.sum(weight)),
            (stats, finite, weight, per_slot))

  slots = _Slot(keys, data.x, data.y, data.mask, active, update_scale)
  zeros = (jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params), jnp.float32(0))
  if dp_clip is not None:
    zeros = zeros + (jnp.float32(0),)
  sums, per_slot = for_each_client.run(
      update_slot, slots, num_blocks=num_blocks, mesh=mesh, block_sum=block_sum, sum_init=zeros)
  return ClientResults(sums[0], sums[1], *per_slot,
                       unclipped=sums[2] if dp_clip is not None else None)


def make_round(spec: RoundSpec) -> Callable:
  """Builds the pure round function; wrap it in `jax.jit`.

  Returns:
    round_step(state: ServerState, clients: ClientData, test: TestData,
    hparams: HParams) -> (ServerState, RoundOutput).
  """
  server_step = server.make_server(spec.methods)
  keep_params = spec.methods.aggregator != 'mean'
  constrain = sharding.client_constraint(spec.mesh)
  dp = spec.methods.privacy != 'none'

  def own_rows(clients: ClientData) -> tuple:
    """Every client's own rows (x, y, mask): the raw rows kept beside prepared ones."""
    if spec.trains_prepared:
      return clients.x.raw
    return clients.x, clients.y, clients.mask

  def evaluate_clients(params, clients: ClientData, hparams: HParams, round_index) -> dict:
    """`metrics.evaluate_clients` on the round's `spec.eval_clients` sampled clients."""
    num_clients = spec.num_clients or clients.client_id.shape[0]
    chosen = sampling.sample_clients(hparams.seed, round_index, num_clients, spec.eval_clients,
                                     stream=sampling.EVAL_STREAM)
    x, y, mask = (jnp.take(a, chosen, axis=0) for a in own_rows(clients))
    return metrics.evaluate_clients(spec.apply_fn, params, x, y, mask, spec.num_classes)

  def participants(clients: ClientData, hparams: HParams, round_index):
    """The round's client slots (ClientData [P]), which of them are active (bool[P]), the
    number of blocks, each slot's attacker flag (bool[P], or None) and the clients a
    Poisson cohort left out (int32; 0 otherwise)."""
    if spec.trains_prepared and clients.x.raw is not None:  # Only the evaluation reads them.
      clients = clients._replace(x=clients.x._replace(raw=None))
    rows = clients.client_id.shape[0]  # x may be a pytree (client.PreparedRows).
    num_clients = spec.num_clients or rows
    blocks, size = slot_layout(spec, num_clients)
    slots = blocks * size
    if not spec.clients_per_round:
      if rows != slots:
        raise ValueError(f'client data has {rows} rows; this layout needs {slots} '
                         f'(pad with data_rows(spec, {num_clients}))')
      return clients, jnp.arange(rows) < num_clients, blocks, hparams.attackers, jnp.int32(0)
    overflow = jnp.int32(0)
    if spec.client_sampling == 'poisson':
      capacity = cohort_slots(spec, num_clients)
      chosen, joined, overflow = sampling.sample_poisson(
          hparams.seed, round_index, num_clients, spec.clients_per_round, capacity)
    else:
      capacity = spec.clients_per_round
      chosen = sampling.sample_clients(hparams.seed, round_index, num_clients,
                                       spec.clients_per_round)
      joined = None
    extra = slots - capacity
    chosen = jnp.concatenate([chosen, jnp.full((extra,), chosen[0], jnp.int32)])
    picked = jax.tree.map(lambda a: constrain(jnp.take(a, chosen, axis=0)), clients)
    active = jnp.arange(slots) < capacity
    if joined is not None:
      active = active & jnp.concatenate([joined, jnp.zeros((extra,), bool)])
    attackers = None if hparams.attackers is None else jnp.take(hparams.attackers, chosen)
    return picked, active, blocks, attackers, overflow

  def round_step(state: ServerState, clients: ClientData, test: TestData, hparams: HParams):
    data, active, blocks, attacker, overflow = participants(clients, hparams, state.round)
    method_params = hparams.method_params()
    dp_clip = None
    if dp:  # The mechanism's clip norm for this round (privacy.fixed / privacy.adaptive).
      dp_clip = registry.resolve('privacy', spec.methods.privacy)(state.dp_clip, method_params)
    scale = None
    if attacker is not None:
      scale = jnp.where(attacker, method_params.attack_scale, 1.0)
    result = run_clients(
        local_update_fn(spec, method_params), state.params,
        client_keys(hparams.seed, state.round, data.client_id), data, active,
        hparams.threshold, hparams.learning_rate, num_blocks=blocks, mesh=spec.mesh,
        keep_params=keep_params, update_scale=scale, dp_clip=dp_clip)
    updates = server.ClientUpdates(result.param_sum, result.weight, result.client_params,
                                   result.weights)
    new_clip = state.dp_clip
    if dp:  # The server sees only the noised mean of the clipped updates: always a step.
      key = privacy.noise_key(hparams.seed, state.round)
      expected = spec.clients_per_round or (spec.num_clients or clients.client_id.shape[0])
      target = privacy.private_target(state.params, result.param_sum, key, dp_clip,
                                      method_params.dp_noise_multiplier, expected)
      updates = server.ClientUpdates(target, jnp.float32(1))
      if state.dp_clip is not None:
        new_clip = privacy.next_clip(
            dp_clip, result.unclipped, key, expected, method_params.dp_target_quantile,
            method_params.dp_clip_learning_rate, method_params.dp_clip_count_stddev)
    # If no client counts (all empty or all dropped) the model stays as it was.
    params, opt_state = server_step.update(updates, state.opt_state, state.params,
                                           method_params)
    evaluation = metrics.evaluate(spec.apply_fn, params, test.x, test.y, test.mask,
                                  spec.num_classes)
    # Clients a Poisson cohort left out (never more than sampling.POISSON_OVERFLOW likely)
    # are counted with the dropped ones.
    evaluation['dropped_clients'] = (jnp.sum(active & ~result.finite).astype(jnp.int32)
                                     + overflow)
    if spec.eval_clients:
      evaluation.update(evaluate_clients(params, clients, hparams, state.round))
    client_index = jnp.where(active, data.client_id, -1)
    return (ServerState(params, state.round + 1, opt_state, new_clip),
            RoundOutput(evaluation, result.stats, client_index))

  return precision.with_matmul_precision(round_step, spec.matmul_precision)


def make_rounds(spec: RoundSpec, block_rounds: int, round_fn: Callable | None = None) -> Callable:
  """Builds the function that runs a block of rounds in one call; wrap it in `jax.jit`.

  `lax.scan` over `block_rounds` steps of the round; a traced `count` says how
  many of them run (the rest are no-ops), so blocks of every length up to
  `block_rounds` share one compiled program. The round is traced once.

  Args:
    spec: the round's static spec.
    block_rounds: static, the most rounds one call runs.
    round_fn: the round to scan (default `make_round(spec)`; e.g. the sweep's
      vmapped round), with round_step's signature.

  Returns:
    rounds_step(state, clients, test, hparams, count: int32 scalar in
    [0, block_rounds]) -> (ServerState after `count` rounds, RoundOutput with
    every leaf stacked on a leading axis [block_rounds]; entries at or past
    `count` are zeros).
  """
  if block_rounds < 1:
    raise ValueError(f'block_rounds must be >= 1, got {block_rounds}')
  # jit inside the trace: eval_shape and the scan body reuse one trace of the round.
  step = jax.jit(round_fn or make_round(spec))

  def rounds_step(state: ServerState, clients, test: TestData, hparams: HParams, count):
    out_like = jax.eval_shape(step, state, clients, test, hparams)[1]

    def run(s):
      return step(s, clients, test, hparams)

    def skip(s):
      return s, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), out_like)

    def body(s, i):
      return jax.lax.cond(i < count, run, skip, s)

    return jax.lax.scan(body, state, jnp.arange(block_rounds))

  return rounds_step


def checkpoint_end(r: int, rounds: int, every: int) -> int:
  """The round a call that starts at round r may run to: the next multiple of `every`
  (a checkpoint) at or after r, or the last round."""
  return min(for_each_client.round_up(r, every), rounds)
