"""fedar-plan: a sweep planned for a multi-host TPU topology of each generation (libtpu,
no TPU attached), the local target end to end, the JSON keys, and the refusals."""
import json
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

from fedar_jax import planning
from fedar_jax import platforms
from fedar_jax import sweep_axes
from fedar_jax import topology
from fedar_jax.config import ConfigError, RunConfig

# A small sweep: 2 thresholds (one group, 2 points), resampled every round (one program);
# random oversampling compiles for a TPU in about half SMOTE's time.
SMALL = dict(num_clients=16, samples_per_client=24, feature_dim=8, hidden=(4,), rounds=3,
             local_epochs=1, batch_size=8, resample_every='round', checkpoint_every=3,
             resampler='random_over')
LISTS = {'thresholds': (1.0, 2.0)}
JSON_KEYS = {'target', 'chips', 'processes', 'hbm_per_chip_bytes', 'programs', 'fits',
             'est_study_s'}
PROGRAM_KEYS = {'name', 'points', 'bytes_per_chip', 'fits', 'flops_per_round', 'est_round_s',
                'compile_s'}

needs_libtpu = pytest.mark.skipif(
    not platforms.libtpu_installed(),
    reason="libtpu is not installed (pip install -e '.[plan]'): TPU topologies cannot compile")


def _run(*flags):
  return subprocess.run([sys.executable, '-m', 'fedar_jax.plan', *flags], capture_output=True,
                        text=True, timeout=300)


@needs_libtpu
@pytest.mark.parametrize('name,chips,processes', [
    ('v4:2x2x4', 16, 4), ('v5e:4x4', 16, 4), ('v5p:2x2x2', 8, 2), ('v6e:4x4', 16, 4)])
def test_plans_a_sweep_for_a_multi_host_topology(name, chips, processes):
  target = topology.resolve(name)
  assert (target.chips, target.processes, target.platform) == (chips, processes, 'tpu')
  assert len(target.devices) == chips  # One device per chip, as JAX on the TPU VM (megacore).
  plan = planning.plan_study(RunConfig(**SMALL), LISTS, target)
  (rounds,) = plan.programs
  assert rounds.name == 'random_over/rounds' and rounds.points == 2 and rounds.runs == 3
  assert sum(rounds.mesh.values()) and rounds.mesh['sweep'] * rounds.mesh['clients'] == len(
      target.devices)
  assert 0 < rounds.argument_bytes <= rounds.bytes_per_chip < target.hbm_per_chip_bytes
  assert rounds.fits and plan.fits and rounds.flops > 0 and rounds.est_s > 0
  assert plan.est_study_s == pytest.approx(3 * rounds.est_s)
  out = plan.to_json()
  assert JSON_KEYS <= set(out) and PROGRAM_KEYS <= set(out['programs'][0])
  assert (out['chips'], out['processes']) == (chips, processes)
  assert out['hbm_per_chip_bytes'] == topology.HBM_PER_CHIP[name.split(':')[0]]


def test_local_plan_end_to_end_writes_the_json(tmp_path):
  path = tmp_path / 'plan.json'
  flags = [f'--{k}={",".join(map(str, v)) if isinstance(v, tuple) else v}'
           for k, v in SMALL.items() if k != 'resample_every']
  proc = _run('--target=local', f'--plan_json={path}', *flags)
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = json.loads(path.read_text())
  assert JSON_KEYS <= set(out) and out['target'] == 'local' and out['fits']
  assert [p['name'] for p in out['programs']] == ['run/prepare', 'run/rounds']
  assert all(PROGRAM_KEYS <= set(p) for p in out['programs'])
  assert 'run/rounds' in proc.stdout and 'estimated study time' in proc.stdout


@pytest.mark.parametrize('name,message', [('v7:2x2', 'unknown topology'),
                                         ('v5e:4', 'unknown topology')])
def test_unknown_topology(name, message):
  with pytest.raises(ConfigError, match=message):
    topology.resolve(name)


@needs_libtpu
def test_a_topology_libtpu_cannot_lay_out():
  with pytest.raises(ConfigError, match="libtpu cannot resolve topology 'v5e:3x3'"):
    topology.resolve('v5e:3x3')


def test_a_target_with_more_client_devices_than_clients_is_refused():
  target = topology.Target('v6e:16x16', tuple(range(256)), 256, 64, 32 << 30, 'tpu', 'v6e')
  mesh = types.SimpleNamespace(shape={'sweep': 1, 'clients': 256})
  with pytest.raises(ConfigError, match='256 devices on the clients axis'):
    planning.check_devices(RunConfig(num_clients=20), mesh, target)


def test_refusal_names_the_program_the_bytes_and_what_would_fit():
  target = topology.Target('v5e:2x2', tuple(range(4)), 4, 1, 16 << 30, 'tpu', 'v5e')
  over = planning.ProgramPlan('smote/rounds', 90, {'sweep': 2, 'clients': 2}, 1 << 30,
                              40 << 30, 1 << 20, 41 << 30, False, 1e9, 1e9, 1e-3, 2.0, 50, 0)
  line = planning.refusal(over, target, '--client_block=8')
  assert line.startswith('smote/rounds needs 41.00 GiB per chip on v5e:2x2, 16.00 GiB')
  assert '--client_block=8' in line and '<= 35 points per program' in line
  assert 'a slice of >= 11 chips (v5e:4x4, v5e:4x8)' in line


def test_largest_fitting_block_bisects_the_block_sizes():
  calls = []

  def fits(block):  # memory grows with the block; blocks of <= 12 clients fit
    calls.append(block)
    return 0 < block <= 12
  # Blocks of 4, 8, 16, ... clients lay out as 4, 8, 16, 28, 52 or all 100.
  assert planning.largest_fitting_block(fits, slots=100, devices=4) == 8
  assert len(calls) <= 6
  assert planning.largest_fitting_block(lambda b: True, 100, 4) == 0
  assert planning.largest_fitting_block(lambda b: False, 100, 4) is None


def _csv(tmp_path):
  from tests.test_data_latent_csv import write_csv
  rng = np.random.default_rng(0)
  write_csv(tmp_path / 'f.csv', rng.normal(size=(300, 6)).astype(np.float32),
            rng.permutation(np.arange(300) % 3))
  return dict(dataset='latent_csv', data_path=str(tmp_path / 'f.csv'))


def _fer(tmp_path):
  from tests.test_data_fer2013 import write_fer
  labels = [3] * 100 + [4] * 80 + [6] * 70
  write_fer(tmp_path / 'f.csv', labels, ['Training'] * 240 + ['PublicTest'] * 10)
  return dict(dataset='fer2013', data_path=str(tmp_path / 'f.csv'), image_size=12,
              fer2013_usage=('Training',))


def _folder(tmp_path):
  from tests.test_data_image_folder import make_folder
  make_folder(tmp_path / 'd', per_class=(30, 45))
  return dict(dataset='image_folder', data_dir=str(tmp_path / 'd'), image_size=8,
              color='rgb')


@pytest.mark.parametrize('source', [_csv, _fer, _folder])
def test_file_data_is_planned_with_the_shapes_the_run_loads(tmp_path, source):
  from fedar_jax import train
  from fedar_jax.data import federated
  cfg = RunConfig(**source(tmp_path), num_clients=4, samples_per_client=12, test_per_class=5, imbalance_ratio=2.0,
                  seed=3)
  shape = planning.abstract_build.data_shape([cfg])
  data = train.load_data(cfg)
  k = len(data.class_names)
  assert shape.exact and shape.row_shape == data.clients.x.shape[2:]
  assert shape.capacity == data.clients.x.shape[1] and shape.num_classes == k
  assert shape.test_rows == data.test.x.shape[0]
  assert shape.max_class_count == federated.max_class_count(data.clients, k)


def test_synthetic_sweep_shape_covers_every_data_set():
  axes = sweep_axes.SweepAxes.of(RunConfig(), imbalance_ratios=(1.0, 5.0))
  shape = planning.abstract_build.data_shape(
      [RunConfig().replace(**d) for d in sweep_axes.data_settings(axes)])
  assert shape.exact and shape.capacity == 220 and shape.max_class_count == 183


@pytest.mark.parametrize('accelerator,name', [
    ('v4-8', 'v4:2x2x1'), ('v4-32', 'v4:2x2x4'), ('v5litepod-16', 'v5e:4x4'),
    ('v5p-16', 'v5p:2x2x2'), ('v6e-256', 'v6e:16x16')])
def test_topology_of_accelerator_type(accelerator, name):
  assert topology.of_accelerator_type(accelerator) == name
  with pytest.raises(ConfigError, match='no topology known'):
    topology.of_accelerator_type('v5litepod-3')


@needs_libtpu
def test_launch_all_creates_no_slice_for_a_study_that_does_not_fit(tmp_path):
  """`launch.sh all` plans on the workstation first; an absurd size is refused in one
  line without building data, and gcloud (a stand-in recording its calls) is never
  called."""
  calls = tmp_path / 'gcloud_calls'
  gcloud = tmp_path / 'bin' / 'gcloud'
  gcloud.parent.mkdir()
  gcloud.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
  gcloud.chmod(0o755)
  root = pathlib.Path(__file__).resolve().parent.parent
  env = {**os.environ, 'PATH': f'{gcloud.parent}:{os.environ["PATH"]}',
         'ACCELERATOR_TYPE': 'v5litepod-4', 'PYTHON': sys.executable,
         'PYTHONPATH': str(root)}
  proc = subprocess.run([str(root / 'experiments/tpu/launch.sh'), 'all', '--',
                         '--num_clients=2000000'], env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  (line,) = proc.stderr.strip().splitlines()
  assert 'v5e:2x2: the client data alone needs' in line and '--num_clients <=' in line
  assert not calls.exists()


@pytest.fixture(scope='module')
def population_dir(tmp_path_factory):
  """A population of 50 clients whose shards are gone: a plan must not read them."""
  from fedar_jax.data import population_writer
  out = str(tmp_path_factory.mktemp('plan') / 'pop')
  population_writer.write(RunConfig(**POPULATION), out, per_shard=20)
  for name in os.listdir(os.path.join(out, 'shards')):
    os.remove(os.path.join(out, 'shards', name))
  return out


POPULATION = dict(num_clients=50, samples_per_client=8, feature_dim=4, test_per_class=5,
                  imbalance_ratio=3.0, rounds=3, local_epochs=1, batch_size=8,
                  resampler='random_over')


@pytest.mark.parametrize('streamed', ['population', 'virtual'])
def test_a_streamed_run_plans_its_cohort_round(population_dir, streamed):
  from fedar_jax import abstract_build
  from fedar_jax import sharding
  memory = RunConfig(**POPULATION, clients_per_round=6)
  cfg = (memory.replace(population=population_dir) if streamed == 'population'
         else memory.replace(virtual_population=True, num_clients=10**8))
  shape = abstract_build.data_shape([cfg])
  assert shape == abstract_build.data_shape([memory])
  inputs = abstract_build.program_inputs((cfg,), 1, shape, sharding.make_mesh(), 0, False)
  assert inputs.clients.x.shape == (6, 8, 4) and inputs.test.x.shape == (10, 4)
  assert (inputs.spec.num_clients, inputs.spec.clients_per_round) == (6, 0)


def test_a_streamed_plan_prepares_and_evaluates_every_round(population_dir):
  cfg = RunConfig(**POPULATION, clients_per_round=6, population=population_dir, eval_clients=2)
  plan = planning.plan_study(cfg, {}, topology.resolve('local'))
  assert [(p.name, p.runs) for p in plan.programs] == [
      ('run/prepare', 3), ('run/rounds', 3), ('run/eval_clients', 3)]
  assert plan.fits and plan.exact_bounds
  evaluate = plan.programs[2]
  assert evaluate.flops > 0 and evaluate.compile_s > 0 and evaluate.mesh == plan.programs[1].mesh
  assert plan.to_json()['programs'][2]['name'] == 'run/eval_clients'


@pytest.mark.parametrize('eval_clients', [0, 2])
def test_a_streamed_run_evaluates_its_clients_in_a_program_of_their_own(population_dir,
                                                                        eval_clients):
  from fedar_jax import abstract_build
  from fedar_jax import sharding
  cfg = RunConfig(**POPULATION, clients_per_round=6, population=population_dir,
                  eval_clients=eval_clients)
  mesh = sharding.make_mesh()
  inputs = abstract_build.program_inputs((cfg,), 1, abstract_build.data_shape([cfg]), mesh, 0,
                                         False)
  assert inputs.spec.eval_clients == 0  # The round holds only the cohort.
  if not eval_clients:
    assert inputs.evaluated is None  # No per-client evaluation program is planned.
    return
  x, y, mask, ids = inputs.evaluated  # As cohort_stream.gather puts them: replicated.
  assert (x.shape, y.shape, mask.shape, ids.shape) == ((2, 8, 4), (2, 8), (2, 8), (2,))
  assert x.sharding == sharding.replicated(mesh)

