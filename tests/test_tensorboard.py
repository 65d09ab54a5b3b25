"""TensorBoard events of single runs and sweeps, read back with a plain TFRecord parser
and tensorboardX's Event protobuf, match metrics.csv / sweep.csv round by round."""
import csv
import glob
import math
import os
import struct

import pytest

from fedar_jax import sweep_axes
from fedar_jax import tensorboard_writer
from fedar_jax.config import RunConfig

TINY = dict(num_clients=3, samples_per_client=40, feature_dim=6, test_per_class=10,
            local_epochs=1, checkpoint_every=2)


def read_events(logdir: str) -> list:
  """Every Event in logdir's event files, in file then record order (TFRecord framing:
  u64 length, u32 length CRC, payload, u32 payload CRC)."""
  from tensorboardX.proto import event_pb2
  events = []
  for path in sorted(glob.glob(os.path.join(logdir, 'events.out.tfevents.*'))):
    data = open(path, 'rb').read()
    at = 0
    while at < len(data):
      (length,) = struct.unpack('<Q', data[at:at + 8])
      event = event_pb2.Event()
      event.ParseFromString(data[at + 12:at + 12 + length])
      events.append(event)
      at += 12 + length + 4
  return events


def read_scalars(logdir: str) -> dict:
  """{tag: {step: value}} of a run directory (a later event of a step wins)."""
  out = {}
  for event in read_events(logdir):
    for value in event.summary.value:
      if not value.tag.startswith('_hparams_/'):
        out.setdefault(value.tag, {})[event.step] = value.simple_value
  return out


def read_hparams(logdir: str) -> tuple[dict, list]:
  """The HParams plugin's records of a run directory: ({hparam: value} of its session start
  info, the metric tags of its experiment)."""
  from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
  start, metrics = {}, []
  for event in read_events(logdir):
    for value in event.summary.value:
      if value.metadata.plugin_data.plugin_name != 'hparams':
        continue
      data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
      if value.tag == '_hparams_/session_start_info':
        for k, v in data.session_start_info.hparams.items():
          start[k] = v.string_value if v.HasField('string_value') else v.number_value
      elif value.tag == '_hparams_/experiment':
        metrics = [m.name.tag for m in data.experiment.metric_infos]
  return start, metrics


def _check_against_rows(scalars: dict, rows: list[dict]):
  # TensorBoard keeps the finite values: epsilon without DP (inf) has no events.
  columns = [c for c in rows[0]
             if c != 'round' and any(math.isfinite(float(r[c])) for r in rows)]
  assert sorted(scalars) == sorted(columns)
  for c in columns:
    assert sorted(scalars[c]) == [int(r['round']) for r in rows], c
    for r in rows:
      assert scalars[c][int(r['round'])] == pytest.approx(float(r[c]), rel=1e-6, abs=1e-6), c


def test_writer_round_trip_and_resume_purge(tmp_path):
  writer = tensorboard_writer.ScalarWriter(str(tmp_path))
  for r in (1, 2, 3):
    writer.write(r, {'round': r, 'gmean': 0.1 * r, 'resampler': 'smote', 'loss': 'nan'})
  writer.close()
  assert read_scalars(str(tmp_path)) == {'gmean': {1: pytest.approx(0.1), 2: pytest.approx(0.2),
                                                   3: pytest.approx(0.3)}}
  resumed = tensorboard_writer.ScalarWriter(str(tmp_path), first_round=3)
  resumed.write(3, {'gmean': 0.5})
  resumed.close()
  purges = [e.step for e in read_events(str(tmp_path)) if e.HasField('session_log')]
  assert purges == [3]  # TensorBoard drops the first invocation's round 3.
  assert read_scalars(str(tmp_path))['gmean'][3] == pytest.approx(0.5)


SINGLE = RunConfig(rounds=3, resampler='random_over', **TINY)


@pytest.fixture(scope='module')
def single_run(tmp_path_factory):
  """The workdir of one small fedar-run (SINGLE)."""
  from fedar_jax import loop
  workdir = tmp_path_factory.mktemp('single')
  loop.train_and_evaluate(SINGLE, str(workdir))
  return workdir


def test_single_run_events_match_metrics_csv(single_run):
  with open(single_run / 'metrics.csv') as f:
    rows = list(csv.DictReader(f))
  _check_against_rows(read_scalars(str(single_run / 'tb')), rows)
  assert (single_run / 'plots' / 'metrics_per_round.png').stat().st_size > 10000


def test_single_run_hparams_record(single_run):
  # tb/ itself is the run (no timestamped subdirectory); its record holds the same
  # setting columns as a sweep point's, typed, with the run's own scalars as metrics.
  assert [p.name for p in (single_run / 'tb').iterdir() if p.is_dir()] == []
  hparams, metrics = read_hparams(str(single_run / 'tb'))
  assert sorted(hparams) == sorted(sweep_axes.ALL_SETTING_COLUMNS)
  assert hparams['resampler'] == 'random_over'
  assert hparams['threshold'] == SINGLE.threshold and hparams['seed'] == SINGLE.seed
  assert metrics == list(tensorboard_writer.HPARAM_METRICS)
  assert set(metrics) <= set(read_scalars(str(single_run / 'tb')))


def test_sweep_events_one_run_dir_per_point(tmp_path):
  from fedar_jax import sweep_runner
  base = RunConfig(rounds=2, **TINY)
  axes = sweep_runner.SweepAxes.of(base, thresholds=(1.0, 20.0), seeds=(0, 1))
  sweep_runner.run_sweep(base, axes, str(tmp_path), stream=open(os.devnull, 'w'))
  with open(tmp_path / 'sweep.csv') as f:
    rows = list(csv.DictReader(f))
  runs = sorted(os.listdir(tmp_path / 'tb' ))
  # Named by every swept setting (the default threshold 1.0 too), in sweep.csv order.
  assert runs == ['threshold=1,seed=0', 'threshold=1,seed=1', 'threshold=20,seed=0',
                  'threshold=20,seed=1']
  for run in runs:
    settings = dict(kv.split('=') for kv in run.split(','))
    mine = [{k: v for k, v in r.items() if k not in sweep_axes.ALL_SETTING_COLUMNS} for r in rows
            if all(r[k] == v for k, v in settings.items())]
    assert len(mine) == 2
    _check_against_rows(read_scalars(str(tmp_path / 'tb' / run)), mine)
    # The HParams record holds every setting column of the point, typed.
    hparams, metrics = read_hparams(str(tmp_path / 'tb' / run))
    [point] = {tuple(r[c] for c in sweep_axes.SETTING_COLUMNS) for r in rows
               if all(r[k] == v for k, v in settings.items())}
    assert sorted(hparams) == sorted(sweep_axes.ALL_SETTING_COLUMNS)
    assert hparams['threshold'] == float(settings['threshold'])
    assert hparams['resampler'] == point[sweep_axes.SETTING_COLUMNS.index('resampler')]
    assert metrics[0] == 'gmean' and set(metrics) <= set(mine[0])


def test_run_names_are_every_swept_setting_defaults_included():
  from fedar_jax import sweep_axes
  base = RunConfig(rounds=2, **TINY)
  axes = sweep_axes.SweepAxes.of(base, attacks=('skew', 'label_flip'), seeds=(0, 1),
                                 attacker_fractions=(0.0, 0.2))
  assert sweep_axes.label_columns(axes) == ('seed', 'attacker_fraction', 'attack')
  label = sweep_axes.point_label(base, sweep_axes.label_columns(axes))
  assert tensorboard_writer.point_dir(label) == 'seed=0,attacker_fraction=0,attack=skew'
  assert sweep_axes.label_columns(sweep_axes.SweepAxes.of(base)) == ('seed',)
