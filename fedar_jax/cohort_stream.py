"""Streamed cohorts: each round's clients read from a `CohortSource` while the last round runs.

A streamed run (--population, or a source given to `loop.train_and_evaluate`)
never holds its population on the devices. Round r's cohort is
`sampling.sample_clients(seed, r - 1, C, P)` evaluated on the host: the clients,
in the slot order, that an in-memory run with --clients_per_round=P picks
inside its round. The cohort is padded to the layout's slots with copies of its
first client (inactive, as the in-memory round pads), so every slot computes
what it computes in memory. The round program is the one an in-memory
population of P clients compiles (`cohort_layout`: clients_per_round=0,
num_clients=P), fed the cohort's real client ids (keys fold (seed, round,
client) as in memory) and HParams.attackers by slot (the cohort's rows).

`CohortStream` gathers round r+1's cohort on a background thread (reading only
the slots this process's devices hold, then putting them on the mesh) while
round r computes: at most two cohorts are resident. A read that fails reaches
the main thread as one DataError line; `close` stops the thread.

With --resample_every=once a client's prepared rows use keys from (seed,
client) alone (pretraining.py), so preparing each cohort as it arrives gives
every client the rows the in-memory run prepares once: recomputed, identical,
nothing stored.
"""
import functools
import queue
import threading
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedar_jax import data_dtype as data_dtype_lib
from fedar_jax import distributed
from fedar_jax import fedar_round
from fedar_jax import metrics
from fedar_jax import precision
from fedar_jax import sampling
from fedar_jax import sharding
from fedar_jax.data import cohort_scaling
from fedar_jax.data import cohort_source
from fedar_jax.data.cohort_source import CohortSource
from fedar_jax.data.errors import DataError
from fedar_jax.data.federated import ClientData


def population_source(cfg) -> CohortSource:
  """--population's directory as the run trains on it: checked against `cfg`'s data flags
  (DataError naming the first that differs), --standardize applied to every cohort."""
  store = cohort_source.open_population(cfg.population)
  store.check_config(cfg)
  return cohort_scaling.standardized(store, cfg.standardize)


def cohort_layout(per_round: int, client_block: int, mesh) -> fedar_round.ClientLayout:
  """The round layout of a cohort of `per_round` clients: that of an in-memory population
  of `per_round` clients, all taking part."""
  return fedar_round.ClientLayout(num_clients=per_round, clients_per_round=0,
                                  client_block=client_block, mesh=mesh)


# Populations up to this size draw their cohorts with NumPy sorts (`sample_ids`).
HOST_SORT_MAX = sampling.PERMUTATION_MAX_CLIENTS


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _sample(seed, round_index, num_clients, count, stream):
  return sampling.sample_clients(seed, round_index, num_clients, count, stream)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _sort_keys(seed, round_index, num_clients: int, rounds: int, stream: int):
  """uint32[rounds, num_clients]: the sort keys of `sampling.sample_clients`'s
  permutation (`jax.random.permutation`: `rounds` stable sorts, each by fresh 32-bit
  keys from a split of the sampling key)."""
  key = sampling.round_key(seed, round_index, stream)
  keys = []
  for _ in range(rounds):
    key, sub = jax.random.split(key)
    keys.append(jax.random.bits(sub, (num_clients,), jnp.uint32))
  return jnp.stack(keys) if keys else jnp.zeros((0, num_clients), jnp.uint32)


# Bits of a sort key that bucket it in `_at_ranks`.
_BUCKET_BITS = 16


def _at_ranks(keys: np.ndarray, ranks: np.ndarray) -> np.ndarray:
  """int64[len(ranks)]: the positions that rank `ranks` in the stable order of uint32 `keys`
  (`np.argsort(keys, kind='stable')[ranks]`), sorting only the buckets that hold them."""
  top = keys >> np.uint32(32 - _BUCKET_BITS)
  sizes = np.bincount(top, minlength=1 << _BUCKET_BITS)
  ends = np.cumsum(sizes)
  bucket = np.searchsorted(ends, ranks, side='right')
  wanted = np.zeros(1 << _BUCKET_BITS, bool)
  wanted[bucket] = True
  held = np.flatnonzero(wanted[top])
  held = held[np.lexsort((held, keys[held]))]  # The wanted buckets one after another.
  kept = np.where(wanted, sizes, 0)
  return held[(np.cumsum(kept) - kept)[bucket] + ranks - (ends - sizes)[bucket]]


def sample_ids(seed: int, round_index: int, num_clients: int, count: int,
               stream: int = sampling._STREAM) -> np.ndarray:
  """int32[count]: `sampling.sample_clients`'s clients (sorted), drawn on the host CPU: up
  to HOST_SORT_MAX clients its permutation's sort keys come from JAX and NumPy finds the
  permutation's first `count` entries through the sorts (`_at_ranks`: only
  the keys near the wanted ranks are sorted); above it `sample_clients` itself.
  tests/test_cohort_stream.py checks the two agree."""
  with jax.default_device(jax.local_devices(backend='cpu')[0]):
    if num_clients > HOST_SORT_MAX:
      return np.asarray(_sample(jnp.int32(seed), jnp.int32(round_index), num_clients, count,
                                stream))
    rounds = int(np.ceil(3 * np.log(max(1, num_clients)) / np.log(np.iinfo(np.uint32).max)))
    keys = np.asarray(_sort_keys(jnp.int32(seed), jnp.int32(round_index), num_clients, rounds,
                                 stream))
  if not rounds:
    return np.arange(count, dtype=np.int32)
  # Sort t moves the element at position i to the rank of (keys[t][i], i): the permutation's
  # slot j holds s_1[s_2[... s_R[j]]], s_t = np.argsort(keys[t - 1], kind='stable').
  at = _at_ranks(keys[-1], np.arange(count))
  for k in keys[-2::-1]:
    at = _at_ranks(k, at)
  return np.sort(at).astype(np.int32)


def cohort_ids(seed: int, round_index: int, num_clients: int, per_round: int,
               slots: int) -> np.ndarray:
  """int32[slots]: the clients of the round with 0-based `round_index` (`per_round` of
  `num_clients`, sorted: `sample_ids`), then copies of the first up to `slots`."""
  chosen = sample_ids(seed, round_index, num_clients, per_round)
  return np.concatenate([chosen, np.full(slots - per_round, chosen[0], np.int32)])


def eval_ids(seed: int, round_index: int, num_clients: int, count: int) -> np.ndarray:
  """int32[count]: the clients evaluated on their own rows after the round with 0-based
  `round_index` (--eval_clients), sampled as the in-memory round samples them."""
  return sample_ids(seed, round_index, num_clients, count, sampling.EVAL_STREAM)


def client_evaluator(spec: fedar_round.RoundSpec, sweep: bool = False):
  """The streamed run's per-client evaluation, compiled once for its shapes:
  (params, ClientData [E, N, ...]) -> {name: float32[E]} (`metrics.evaluate_clients`,
  traced under spec.matmul_precision); sweep: params with a leading axis S, scores [S, E]."""
  def scores(params, rows: ClientData):
    return metrics.evaluate_clients(spec.apply_fn, params, rows.x, rows.y, rows.mask,
                                    spec.num_classes)
  fn = precision.with_matmul_precision(scores, spec.matmul_precision)
  return jax.jit(jax.vmap(fn, in_axes=(0, None)) if sweep else fn)


class Cohort(NamedTuple):
  """One round's cohort on the devices. round: 1-based. ids: int32[slots] (host).
  clients: ClientData [slots, N, ...] sharded over the mesh's CLIENTS axis.
  attackers: bool[slots] replicated (--attack=scale), or None.
  evaluated: the clients evaluated after the round (--eval_clients), ClientData [E, N, ...]
  replicated, or None."""
  round: int
  ids: np.ndarray
  clients: ClientData
  attackers: jax.Array | None
  evaluated: ClientData | None = None


class StreamSpec(NamedTuple):
  """What a stream reads: `per_round` (P) of the source's clients into `slots` slots with
  `seed`'s sampling keys; `scale_attack`: also read the cohort's attackers; `eval_clients`:
  also read that many clients to evaluate after the round (`eval_ids`); `data_dtype`: the
  dtype the clients' rows are put on the devices in (`data_dtype.DTYPES`)."""
  seed: int
  per_round: int
  slots: int
  scale_attack: bool
  eval_clients: int = 0
  data_dtype: str = 'float32'


def gather(source: CohortSource, spec: StreamSpec, mesh, round_number: int) -> Cohort:
  """Round `round_number`'s cohort (1-based), read and put on `mesh`: this process reads
  only the slots its devices hold."""
  ids = cohort_ids(spec.seed, round_number - 1, source.num_clients, spec.per_round, spec.slots)
  start, stop = distributed.local_rows(sharding.leading(mesh), spec.slots)
  local = source.cohort(ids[start:stop])
  want = (stop - start, source.capacity) + tuple(source.row_shape)
  if tuple(np.shape(local.x)) != want:
    raise ValueError(f'the cohort has x of shape {tuple(np.shape(local.x))}, expected {want}')
  clients = sharding.shard_clients(ClientData(
      data_dtype_lib.stored(np.asarray(local.x, np.float32), spec.data_dtype),
      np.asarray(local.y, np.int32),
      np.asarray(local.mask, bool), ids[start:stop]), mesh, spec.slots)
  attackers = None
  if spec.scale_attack:
    flags = source.attackers(ids)
    attackers = sharding.replicate(
        np.zeros(spec.slots, bool) if flags is None else np.asarray(flags, bool), mesh)
  evaluated = None
  if spec.eval_clients:  # Every process reads all E (replicated; E is small).
    rows = source.cohort(eval_ids(spec.seed, round_number - 1, source.num_clients,
                                  spec.eval_clients))
    evaluated = sharding.replicate(ClientData(
        data_dtype_lib.stored(np.asarray(rows.x, np.float32), spec.data_dtype),
        np.asarray(rows.y, np.int32),
        np.asarray(rows.mask, bool), np.asarray(rows.client_id, np.int32)), mesh)
  jax.block_until_ready((clients, attackers, evaluated))  # On the devices before the round.
  return Cohort(round_number, ids, clients, attackers, evaluated)


class CohortStream:
  """Gathers cohorts on a background thread, one round ahead of the caller.

  `take(r)` returns round r's cohort (waiting for it if it is not read yet) and
  starts reading round r + 1 (up to `last_round`), so at most two cohorts are
  resident: the one the caller computes with and the next. Rounds are taken in
  order. A failed read raises DataError('--population', ...) in `take`.
  """

  def __init__(self, source: CohortSource, spec: StreamSpec, mesh, last_round: int,
               name: str = '--population'):
    self.source, self.spec, self.mesh, self.last_round, self.name = (
        source, spec, mesh, last_round, name)
    self._requests = queue.Queue()
    self._results = queue.Queue(maxsize=1)
    self._requested = None
    self._thread = threading.Thread(target=self._work, name='cohort-stream', daemon=True)
    self._thread.start()

  def _work(self):
    while True:
      r = self._requests.get()
      if r is None:
        return
      try:
        item = gather(self.source, self.spec, self.mesh, r)
      except Exception as e:  # Handed to the caller's thread, raised there as one line.
        item = e
      self._results.put((r, item))

  def request(self, round_number: int) -> None:
    """Starts reading round `round_number`'s cohort (if it is not already being read)."""
    if self._requested != round_number:
      self._requested = round_number
      self._requests.put(round_number)

  def take(self, round_number: int) -> Cohort:
    """Round `round_number`'s cohort on the devices; starts reading the next one."""
    self.request(round_number)
    r, item = self._results.get()
    if r != round_number:
      raise RuntimeError(f'cohort stream out of order: read round {r}, asked for {round_number}')
    if isinstance(item, Exception):
      message = ' '.join(str(item).split()) or type(item).__name__
      raise DataError(self.name, f'reading round {round_number}\'s cohort failed: {message}')
    if round_number < self.last_round:
      self.request(round_number + 1)
    return item

  def close(self) -> None:
    """Stops the thread after the read in progress (the cohort read is dropped)."""
    self._requests.put(None)
    try:  # Unblock a read waiting to hand over its result.
      self._results.get_nowait()
    except queue.Empty:
      pass


class StreamedStep:
  """The streamed run's block-of-rounds callable, `programs.Program.step`'s signature:
  each call runs one round on the next cohort of `stream` (rounds in order from
  `first_round`). The `clients` argument is unused (the cohort replaces it); the
  cohort's attackers replace hparams.attackers (every point's, in a sweep); with a pre-training step
  (--resample_every=once) the cohort is prepared first. With `evaluate`
  (`client_evaluator`), the new model is then scored on the cohort's evaluated clients and
  the scores join the round's metrics (a leading block axis of 1), as the in-memory round
  reports them."""

  def __init__(self, program, stream: CohortStream, first_round: int, evaluate=None):
    self.program, self.stream, self.next_round = program, stream, first_round
    self.evaluate = evaluate

  def __call__(self, state, clients, test, hparams, count):
    del clients
    cohort = self.stream.take(self.next_round)
    if cohort.attackers is not None:
      attackers = cohort.attackers
      if hparams.attackers.ndim > attackers.ndim:  # A sweep's [S, slots]: every point's.
        attackers = jax.device_put(jnp.broadcast_to(attackers, hparams.attackers.shape),
                                   hparams.attackers.sharding)
      hparams = hparams._replace(attackers=attackers)
    data = cohort.clients
    if self.program.prepare_clients is not None:
      data = self.program.prepare_clients(data, hparams)
    state, outs = self.program.step(state, data, test, hparams, count)
    if self.evaluate is not None and cohort.evaluated is not None:
      scores = self.evaluate(state.params, cohort.evaluated)
      outs = outs._replace(metrics={**outs.metrics,
                                    **{k: v[None] for k, v in scores.items()}})
    self.next_round += 1
    return state, outs


def cohort_shapes(source: CohortSource, slots: int, mesh,
                  data_dtype: str = 'float32') -> ClientData:
  """ShapeDtypeStructs of a cohort on `mesh` (what the streamed round compiles for), its
  rows x in `data_dtype` (a `data_dtype.DTYPES` entry)."""
  sharded = sharding.leading(mesh)
  shape = lambda tail, dtype: jax.ShapeDtypeStruct((slots,) + tail, dtype, sharding=sharded)
  n = source.capacity
  return ClientData(shape((n,) + tuple(source.row_shape),
                          data_dtype_lib.numpy_dtype(data_dtype)),
                    shape((n,), jnp.int32), shape((n,), jnp.bool_), shape((), jnp.int32))
