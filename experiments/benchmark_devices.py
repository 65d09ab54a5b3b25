"""Benchmark (c): 1 vs 8 forced host devices (XLA_FLAGS=--xla_force_host_platform_device_count).

The same run in two fresh processes, the client axis sharded over 1 and over 8
CPU "devices"; reports seconds per round and the final G-mean (which must
agree). On a machine with fewer cores than devices, 8 devices cannot be
faster: this measures the sharding overhead, and checks equality at scale.

  python experiments/benchmark.py --sections=devices [--quick]
"""
import os

from benchmark_scale import run_config


def run(args):
  if args.quick:
    settings = dict(num_clients=16, samples_per_client=40, feature_dim=16)
  else:
    settings = dict(num_clients=256, samples_per_client=200, feature_dim=432)
  settings.update(rounds=3, local_epochs=1, test_per_class=500)
  for devices in (1, 8):
    env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
    yield {'devices': devices, **settings, **run_config(settings, env=env)}
