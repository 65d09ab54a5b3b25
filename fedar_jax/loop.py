"""The driver loop: run the compiled block of rounds call by call, write the workdir.

Workdir contents of a run:
  metrics.csv   one row per round (written and flushed as each round ends)
  summary.json  the config, final metrics, compile_s, round_s, device
  config.json   the settings the workdir was started with (a rerun must match)
  checkpoints/  Orbax checkpoints; rerunning the same command resumes from the newest
  partition.*   per-client class counts and IRs (json, csv, png; data/summary.py)
  tb/           TensorBoard events: every metrics.csv column per round, and the run's
                settings as an HParams record (tensorboard_writer.py)
  plots/metrics_per_round.png   the metrics per round (report_plots.write_run_plot)

The client axis is sharded over a mesh of all devices (of all processes in a
multi-host run, where each process loads only its own clients and process 0
writes the workdir).
"""
import json
import os
import statistics
import time
from typing import Callable, NamedTuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from fedar_jax import checkpoint
from fedar_jax import checkpoint_record
from fedar_jax import client_block_fit
from fedar_jax import cohort_stream
from fedar_jax import config as config_lib
from fedar_jax import data_dtype
from fedar_jax import distributed
from fedar_jax import interrupts
from fedar_jax import memory_estimate
from fedar_jax import fedar_round
from fedar_jax import metrics
from fedar_jax import platforms
from fedar_jax import privacy_accounting
from fedar_jax import progress
from fedar_jax import sharding
from fedar_jax import sweep_axes
from fedar_jax import tensorboard_writer
from fedar_jax import workdir as workdir_lib
from fedar_jax.config import RunConfig
from fedar_jax.data import federated
from fedar_jax.data import summary as data_summary
from fedar_jax.data import virtual_population
from fedar_jax.data.load import FederatedDataset
from fedar_jax.programs import (block_length, compile_program, compiler_options,
                                once_compiler_options)
from fedar_jax.train import build, build_layout, build_streamed


# The columns --eval_clients adds at the end of metrics.csv and sweep.csv rows: the mean and
# the 10th percentile (NumPy's linear interpolation) over the evaluated clients.
CLIENT_EVAL_COLUMNS = tuple(f'{name}_{stat}' for name in metrics.CLIENT_METRIC_NAMES
                            for stat in ('mean', 'p10'))


def csv_header(class_names, client_eval: bool = False) -> list[str]:
  """metrics.csv's columns; client_eval: the run evaluates clients (--eval_clients > 0)."""
  return (['round', *metrics.METRIC_NAMES] + [f'recall_{n}' for n in class_names]
          + ['resampled_clients', 'dropped_clients', 'fallback_clients', 'mean_client_ir',
             'train_loss', 'round_s', 'epsilon']
          + list(CLIENT_EVAL_COLUMNS if client_eval else ()))


def complete_rows(rows: list, width: int, tail) -> list:
  """CSV rows kept by a checkpoint written before the row had `width` cells: each short
  row gets the last `width - len(row)` cells of `tail(row)` (the cells a run of that
  version wrote nothing for: epsilon inf, DP settings at their defaults)."""
  return [row if len(row) >= width else row + tail(row)[len(row) - width:] for row in rows]


def client_eval_cells(m: dict, index: tuple) -> list[str]:
  """The CLIENT_EVAL_COLUMNS cells of one row from the round's per-client scores
  (m[name][index]: float[E]); none where the round evaluated no clients."""
  if metrics.CLIENT_METRIC_NAMES[0] not in m:
    return []
  cells = []
  for name in metrics.CLIENT_METRIC_NAMES:
    scores = np.asarray(m[name][index], np.float64)
    cells += [f'{float(np.mean(scores)):.6f}', f'{float(np.percentile(scores, 10)):.6f}']
  return cells


def csv_rows(first_round: int, outs: fedar_round.RoundOutput, seconds: float) -> list[list]:
  """metrics.csv rows of a block of R rounds from first_round, computed at once, without
  the epsilon cell (`run_calls` appends each point's).

  outs: NumPy leaves [R, ...], or [R, S, ...] for a sweep's S points (rows
  round-major, then point). Client statistics are over each round's
  participating clients (slots with client_index >= 0); train_loss is the mean
  over those with a finite loss (NaN if none).
  """
  m, stats = outs.metrics, outs.clients
  lead = np.shape(m['accuracy'])
  real = (np.ones(np.shape(stats.ir), bool) if outs.client_index is None
          else outs.client_index >= 0)
  count = np.maximum(np.sum(real, -1), 1)
  resampled, fallback = (np.sum(a & real, -1) for a in (stats.resampled, stats.fallback))
  ir = np.sum(np.where(real, stats.ir, 0), -1, dtype=np.float64) / count
  # A client dropped for non-finite data has a non-finite loss: mean over the finite ones.
  finite = real & np.isfinite(stats.loss)
  loss = (np.sum(np.where(finite, stats.loss, 0), -1, dtype=np.float64)
          / np.where(np.any(finite, -1), np.maximum(np.sum(finite, -1), 1), np.nan))
  dropped = m.get('dropped_clients', np.zeros(lead, np.int32))
  return [[first_round + i[0]] + [f'{float(m[k][i]):.6f}' for k in metrics.METRIC_NAMES]
          + [f'{float(r):.6f}' for r in m['recall'][i]]
          + [int(resampled[i]), int(dropped[i]), int(fallback[i]), f'{float(ir[i]):.4f}',
             f'{float(loss[i]):.6f}', f'{seconds:.4f}'] + client_eval_cells(m, i)
          for i in np.ndindex(*lead)]


# A compiled call runs at most about this many seconds of rounds (at the speed measured so
# far), so a signal, a progress update or a CSV row is never far away on a slow machine.
CALL_SECONDS = 2.0


class CallPlan:
  """The compiled calls of rounds done+1..rounds as (first round, count).

  Calls never cross a checkpoint (a multiple of `every`) or the last round, and
  hold at most `block` rounds (the compiled block length). The first call runs
  one round; later ones as many as fit in `seconds` at the speed `record`ed so
  far. Results do not depend on the split (the round count is traced).
  """

  def __init__(self, done: int, rounds: int, every: int, block: int,
               seconds: float | None = None):
    self.next, self.rounds, self.every, self.block = done + 1, rounds, every, block
    self.seconds = CALL_SECONDS if seconds is None else seconds
    self.per_round = None

  def __bool__(self) -> bool:
    return self.next <= self.rounds

  def __iter__(self):
    while self.next <= self.rounds:
      first = self.next
      count = fedar_round.checkpoint_end(first, self.rounds, self.every) - first + 1
      count = min(count, self.block, 1 if self.per_round is None else max(
          1, int(self.seconds / max(self.per_round, 1e-9))))
      self.next = first + count
      yield first, count

  def record(self, count: int, seconds: float) -> None:
    self.per_round = seconds / count

  def checkpoint_due(self, last_round: int) -> bool:
    """Whether the call that ended with `last_round` ends on a checkpoint."""
    return last_round == fedar_round.checkpoint_end(last_round, self.rounds, self.every)


def run_block(step, state, clients, test, hparams, count: int):
  """One call of the compiled block running `count` rounds.

  Returns (state, outputs on the device [block_rounds, ...], the first `count`
  outputs as NumPy [count, ...] fetched in one transfer, seconds).
  """
  t = time.perf_counter()
  state, device_outs = step(state, clients, test, hparams, jnp.int32(count))
  # Fetch, then slice (a NumPy view): slicing on the device first would compile a
  # slice program per leaf for every new count and dispatch one per leaf per call
  # (experiments/driver_overhead.py times both). The rows past `count` are only in a
  # run's last, partial call.
  outs = jax.tree.map(lambda a: a[:count], sharding.fetch(device_outs))
  return state, device_outs, outs, time.perf_counter() - t


class RowSink(NamedTuple):
  """Where a loop's rounds go: the CSV file `f` and its csv `writer`, `rows` (every row so
  far, kept in the checkpoints), the metric `header`, one settings prefix per point
  (`[[]]` for a single run: a run is a sweep of one point with no setting columns),
  one TensorBoard writer per point (None: not written), one tuple of cumulative epsilons
  per point (privacy_accounting.run_epsilons; None: inf) and one list of trailing
  setting cells per point (written after the metrics; None: none)."""
  f: object
  writer: object
  rows: list
  header: list
  settings: list
  tbs: list
  epsilons: list | None = None
  trailing: list | None = None


def run_calls(step, state, inputs: tuple, calls: CallPlan, ckpt: checkpoint.Checkpoints,
              sink: RowSink, round_done: Callable[[int, float, list[dict]], None]):
  """Runs every call of `calls` and writes each round as its call returns.

  step: the compiled block of rounds (`programs.Program.step`); inputs: its
  (clients, test, hparams). Every round appends one row per point (the point's
  settings, then the metrics.csv columns) to `sink`, writes the point's
  TensorBoard scalars and calls `round_done(round, seconds per round, cells)`
  with the points' {column: value} metric cells. A call that ends on a
  checkpoint round, or after a signal, saves the state and the rows; a signal
  then ends the loop (`interrupts.Interrupted`). The TensorBoard writers are
  closed on the way out.

  Returns (state, the last call's metrics on the device or None if no call ran,
  seconds per round of every round run).
  """
  times, last = [], None  # last: the last call's device metrics and its last round's index.
  points = len(sink.settings)
  epsilons = sink.epsilons or [None] * points
  trailing = sink.trailing or [[]] * points
  fixed = sink.header.index('epsilon')  # csv_rows' cells before the epsilon cell.
  try:
    with interrupts.deferred(enabled=jax.process_count() == 1):
      for first, count in calls:
        state, device_outs, outs, seconds = run_block(step, state, *inputs, count)
        calls.record(count, seconds)
        block = csv_rows(first, outs, seconds / count)  # Round-major, then point.
        for i in range(count):
          times.append(seconds / count)
          # epsilon follows round_s; the trailing settings follow it, then the optional
          # columns (client evaluation).
          metric_rows = [row[:fixed] + [privacy_accounting.epsilon_cell(eps, first + i)]
                         + row[fixed:]
                         for row, eps in zip(block[i * points:(i + 1) * points], epsilons)]
          new = [point + row[:fixed + 1] + tail + row[fixed + 1:]
                 for point, row, tail in zip(sink.settings, metric_rows, trailing)]
          sink.rows.extend(new)
          sink.writer.writerows(new)
          cells = [dict(zip(sink.header, row)) for row in metric_rows]
          for tb, cell in zip(sink.tbs, cells):
            if tb is not None:
              tb.write(first + i, cell)
          round_done(first + i, times[-1], cells)
        sink.f.flush()
        last = (device_outs.metrics, count - 1)
        if calls.checkpoint_due(first + count - 1) or interrupts.pending():
          ckpt.save(state, _round_of(*last), rows=sink.rows)
        if interrupts.pending():
          interrupts.stop(first + count - 1)
  finally:
    for tb in sink.tbs:
      if tb is not None:
        tb.close()
  return state, None if last is None else _round_of(*last), times


def _round_of(block_metrics: dict, index: int) -> dict:
  """One round's metrics (on the device) of a call's [block, ...] metrics: sliced only where
  a checkpoint or the summary needs them (a slice per leaf is a dispatch each)."""
  return jax.tree.map(lambda a: a[index], block_metrics)


def device_description() -> str:
  d = jax.devices()
  hosts = f' on {jax.process_count()} processes' if jax.process_count() > 1 else ''
  return f'{len(d)} x {d[0].platform}:{d[0].device_kind}{hosts}'


def log_idle_cores() -> None:
  """Logs a hint where a one-process run on a CPU of several cores has one device."""
  cores = platforms.cpu_cores()
  if jax.device_count() == 1 and jax.devices()[0].platform == 'cpu' and cores > 1:
    logging.info('one CPU device on %d cores: --cpu_devices=0 shares the clients over all '
                 'of them, a faster round (docs/scale.md)', cores)


def setup(cfg: RunConfig, source=None):
  """Joins the processes of a multi-host run, makes the device mesh, builds the experiment.

  source: a CohortSource whose cohorts the run streams (data/cohort_source.py); default
  the --population directory's, if given, or the virtual population's
  (data/virtual_population.py), else the data is loaded into memory.
  Returns (Experiment, mesh). Raises DataError / ConfigError for data that
  does not fit the flags; nothing has been written to the workdir by then.
  """
  distributed.initialize(cfg.coordinator_address, cfg.num_processes, cfg.process_id,
                         cfg.coordinator_timeout_s)
  mesh = sharding.make_mesh()
  # Cohorts read or generated round by round: nothing is loaded whole.
  streamed = source is not None or bool(cfg.population) or config_lib.is_virtual(cfg)
  if not streamed:
    memory_estimate.check_before_loading(cfg)  # Before images are decoded at that size.
  with progress.stage('loading data, building the model'):
    if source is None and cfg.population:
      source = cohort_stream.population_source(cfg)
    if source is None:
      source = virtual_population.source(cfg)  # None unless the population is virtual.
    if source is not None:
      return build_streamed(cfg, source, mesh), mesh
    rows = build_layout(cfg, mesh, client_block_fit.choose(cfg, mesh))
    exp = build(cfg, mesh=mesh, rows=rows)
  return exp, mesh


def write_partition_files(workdir: str, cfg: RunConfig, data: FederatedDataset) -> None:
  """Writes partition.{json,csv,png} for the real clients (single-process runs only)."""
  if jax.process_count() > 1:
    logging.info('multi-host run: no partition summary (each host holds only its clients)')
    return
  real = np.asarray(data.clients.client_id) < cfg.num_clients
  # The summary reads labels and masks only: take no copy of the features (GBs at scale).
  clients = federated.take_clients(data.clients._replace(x=data.clients.x[:, :0]), real)
  os.makedirs(workdir, exist_ok=True)
  s = data_summary.write_partition_summary(workdir, data._replace(clients=clients))
  line = data_summary.single_class_line(s)
  if line:
    logging.warning('%s', line)


def train_and_evaluate(cfg: RunConfig, workdir: str, built=None, source=None) -> dict:
  """Runs `cfg.rounds` FedAR rounds and writes metrics.csv and summary.json to `workdir`.

  Resumes from the newest checkpoint in `workdir/checkpoints` if there is one
  (raises ConfigError if the workdir was started with other settings).
  `built` is `setup(cfg, source)`'s result, made here if not given; a streamed
  run (a CohortSource `source`, or --population) reads each round's cohort as
  the last round runs (cohort_stream.py) and writes no partition files.
  Returns the summary dict.
  """
  settings = workdir_lib.run_settings(cfg)
  workdir_lib.check_resume(workdir, 'config.json', settings)
  checkpoint_record.check(os.path.join(workdir, 'checkpoints'), settings)
  exp, mesh = built or setup(cfg, source)
  if exp.source is not None:
    inputs = _streamed_inputs(cfg, exp, mesh, workdir)
  else:
    inputs = _in_memory_inputs(cfg, exp, mesh, workdir)
  exp = exp._replace(data=exp.data._replace(clients=None))  # Free the host copy (GBs at scale).
  done, rows, calls, step, compile_s, state, (clients, test, hparams), close = inputs
  writer_process = distributed.is_writer()
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  last_metrics = None
  if writer_process:
    workdir_lib.save_settings(workdir, 'config.json', settings)
  ckpt = checkpoint.Checkpoints(ckpt_dir, cfg.keep_checkpoints, settings)
  if done:
    state, last_metrics = ckpt.restore(state, step=done)
    logging.info('resuming after round %d from %s', done, ckpt_dir)
  header = csv_header(exp.data.class_names, cfg.eval_clients > 0)
  epsilons = privacy_accounting.run_epsilons(cfg)
  # Rows of an older version lack the epsilon cell (and never had client evaluation).
  rows = complete_rows(rows, len(csv_header(exp.data.class_names)),
                       lambda row: [privacy_accounting.epsilon_cell(epsilons, int(row[0]))])
  f, writer = workdir_lib.open_rows(
      os.path.join(workdir, 'metrics.csv') if writer_process else None, header, rows=rows)
  tb = (tensorboard_writer.ScalarWriter(os.path.join(workdir, 'tb'), done + 1,
                                        hparams=sweep_axes.point_hparams(cfg))
        if writer_process else None)
  bar = progress.Progress(cfg.rounds, 1, desc='run')
  bar.skip(done)
  participants = exp.spec.clients_per_round or exp.spec.num_clients or cfg.num_clients
  try:
    with f:
      state, metrics_now, times = run_calls(
          step, state, (clients, test, hparams), calls, ckpt,
          RowSink(f, writer, rows, header, [[]], [tb], [epsilons]),
          lambda r, seconds, cells: bar.round_done(seconds, round_label(cells[0], participants)))
  finally:
    bar.close()
    close()
    ckpt.close()  # Also after a signal: no checkpoint work is left for interpreter exit.
  last_metrics = metrics_now if metrics_now is not None else last_metrics
  last_metrics = sharding.fetch(last_metrics)
  final = {k: float(v) for k, v in last_metrics.items() if np.ndim(v) == 0}
  final['recall'] = {n: float(v) for n, v in zip(exp.data.class_names, last_metrics['recall'])}
  summary = {
      'config': cfg.to_dict(),
      'final': final,
      'confusion': last_metrics['confusion'].tolist(),
      'compile_s': compile_s,
      'round_s': statistics.median(times) if times else None,
      'device': device_description(),
  }
  if writer_process:
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    from fedar_jax import report_plots  # Imports matplotlib.
    report_plots.write_run_plot(workdir)
  return summary


class _Inputs(NamedTuple):
  """What the round loop runs: rounds done and the rows kept with them, the CallPlan, the
  compiled step (None when nothing is left to run), compile seconds, the initial state,
  the step's (clients, test, hparams) and what to call when the loop ends."""
  done: int
  rows: list
  calls: CallPlan
  step: Callable | None
  compile_s: float
  state: object
  inputs: tuple
  close: Callable = lambda: None


def _in_memory_inputs(cfg: RunConfig, exp, mesh, workdir: str) -> _Inputs:
  """The whole population sharded on the devices, the block of rounds compiled."""
  if distributed.is_writer():
    write_partition_files(workdir, cfg, exp.data)
  rows = fedar_round.data_rows(exp.spec, cfg.num_clients)
  clients = sharding.shard_clients(
      data_dtype.stored_clients(exp.data.clients, cfg.data_dtype), mesh, rows)
  test, state, hparams = sharding.replicate((exp.data.test, exp.state, exp.hparams), mesh)
  local_rows = exp.data.clients.x.shape[0]
  blocks, block_size = fedar_round.slot_layout(exp.spec, cfg.num_clients)
  logging.info('data: %d clients (%d rows, %d here) x %d rows x %s features, %d classes; '
               'resampler %s (capacity %d rows); %s per round in %d block(s) of %d; %s',
               cfg.num_clients, rows, local_rows, *clients.x.shape[1:2],
               clients.x.shape[2:], exp.spec.num_classes, exp.spec.resampler.name,
               exp.spec.resampler.capacity, exp.spec.clients_per_round or 'all', blocks,
               block_size, device_description())
  log_idle_cores()
  # The newest checkpoint that reads back (newer unreadable ones are set aside).
  done, kept = checkpoint.resume_point(os.path.join(workdir, 'checkpoints'),
                                       cfg.keep_checkpoints)
  calls = CallPlan(done, cfg.rounds, cfg.checkpoint_every, block_length(cfg))
  step, compile_s = None, 0.0
  if calls:  # A finished run compiles nothing.
    t0 = time.perf_counter()
    with progress.stage('compiling the round'):
      program = compile_program(exp.spec, block_length(cfg), cfg.resample_every, state, clients,
                                test, hparams, options=compiler_options(cfg.fast_compile))
    compile_s = time.perf_counter() - t0
    logging.info('compiled the round (%d rounds per call) in %.2fs', block_length(cfg),
                 compile_s)
    if program.prepare_clients is not None:  # Resampled once; the rows stay on the device.
      clients = program.prepare_clients(clients, hparams)
    step = program.step
  return _Inputs(done, kept, calls, step, compile_s, state, (clients, test, hparams))


def _streamed_inputs(cfg: RunConfig, exp, mesh, workdir: str) -> _Inputs:
  """A stream of cohorts from `exp.source` (started at the first round left), the
  cohort's round compiled once (one round per call)."""
  source, spec = exp.source, exp.spec
  slots = fedar_round.data_rows(spec, spec.num_clients)
  test, state, hparams = sharding.replicate((exp.data.test, exp.state, exp.hparams), mesh)
  blocks, block_size = fedar_round.slot_layout(spec, spec.num_clients)
  logging.info('data: %d clients streamed, cohorts of %d (%d slots) x %d rows x %s features, '
               '%d classes; resampler %s (capacity %d rows); %d block(s) of %d; %s',
               source.num_clients, spec.num_clients, slots, source.capacity,
               tuple(source.row_shape), spec.num_classes, spec.resampler.name,
               spec.resampler.capacity, blocks, block_size, device_description())
  log_idle_cores()
  done, kept = checkpoint.resume_point(os.path.join(workdir, 'checkpoints'),
                                       cfg.keep_checkpoints)
  calls = CallPlan(done, cfg.rounds, cfg.checkpoint_every, 1)
  step, compile_s, stream = None, 0.0, None
  if calls:
    stream = cohort_stream.CohortStream(
        source, cohort_stream.StreamSpec(cfg.seed, spec.num_clients, slots,
                                         hparams.attackers is not None, cfg.eval_clients,
                                         cfg.data_dtype),
        mesh, cfg.rounds)
    stream.request(done + 1)  # Read while the round compiles.
    t0 = time.perf_counter()
    with progress.stage('compiling the round'):
      program = compile_program(spec, 1, cfg.resample_every, state,
                                cohort_stream.cohort_shapes(source, slots, mesh,
                                                            cfg.data_dtype), test, hparams,
                                options=compiler_options(cfg.fast_compile),
                                once_options=once_compiler_options(streamed=True))
    compile_s = time.perf_counter() - t0
    logging.info('compiled the cohort\'s round in %.2fs', compile_s)
    step = cohort_stream.StreamedStep(
        program, stream, done + 1,
        cohort_stream.client_evaluator(spec) if cfg.eval_clients else None)
  return _Inputs(done, kept, calls, step, compile_s, state, (None, test, hparams),
                 stream.close if stream is not None else lambda: None)


def round_label(cell: dict, participants: int) -> str:
  """The progress text of a round: 'gmean 0.801 acc 0.812 f1 0.810 resampled 10/10 0.012s',
  with 'fallback N' after the resampled count when N clients fell back (fallback_clients)
  and 'dropped N' when N were dropped."""
  dropped, fallback = int(cell['dropped_clients']), int(cell['fallback_clients'])
  return (f"gmean {float(cell['gmean']):.3f} acc {float(cell['accuracy']):.3f} "
          f"f1 {float(cell['f1']):.3f} resampled {cell['resampled_clients']}/{participants}"
          + (f' fallback {fallback}' if fallback else '')
          + (f' dropped {dropped}' if dropped else '') + f"  {float(cell['round_s']):.3f}s")
