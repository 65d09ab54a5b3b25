"""Benchmark section `resamplers`: one vmapped call per sampler vs imbalanced-learn.

For every sampler: clients x N x D = 1000 x 256 x 432 (binary, IR 10, the
synthetic workload), seconds for one jitted `vmap` call over all clients
(compiled beforehand; compile time reported apart) and for imbalanced-learn's
`fit_resample` looped over the same clients. Where the imbalanced-learn loop is
too slow, it is timed on the first `--ref_clients` clients and extrapolated
linearly (`ref_extrapolated` says so). Both are measured in the same run.

  python experiments/benchmark.py --sections=resamplers [--quick]
"""
import time
import warnings

import jax
import numpy as np
from imblearn import combine, over_sampling as ios, under_sampling as ius

from fedar_jax import resample
from fedar_jax.config import RunConfig
from fedar_jax.data import federated
from fedar_jax.data.load import load_federated

# flag value -> imbalanced-learn sampler factory (random_state fixed).
IMBLEARN = {
    'random_over': lambda: ios.RandomOverSampler(random_state=0),
    'smote': lambda: ios.SMOTE(random_state=0),
    'borderline_smote1': lambda: ios.BorderlineSMOTE(random_state=0),
    'borderline_smote2': lambda: ios.BorderlineSMOTE(kind='borderline-2', random_state=0),
    'adasyn': lambda: ios.ADASYN(random_state=0),
    'kmeans_smote': lambda: ios.KMeansSMOTE(random_state=0),
    'svm_smote': lambda: ios.SVMSMOTE(random_state=0),
    'smote_tomek': lambda: combine.SMOTETomek(random_state=0),
    'smote_enn': lambda: combine.SMOTEENN(random_state=0),
    'random_under': lambda: ius.RandomUnderSampler(random_state=0),
    'nearmiss1': lambda: ius.NearMiss(version=1),
    'nearmiss2': lambda: ius.NearMiss(version=2),
    'nearmiss3': lambda: ius.NearMiss(version=3),
    'tomek': lambda: ius.TomekLinks(),
    'enn': lambda: ius.EditedNearestNeighbours(),
    'renn': lambda: ius.RepeatedEditedNearestNeighbours(),
    'allknn': lambda: ius.AllKNN(),
    'cnn': lambda: ius.CondensedNearestNeighbour(random_state=0),
    'oss': lambda: ius.OneSidedSelection(random_state=0),
    'ncr': lambda: ius.NeighbourhoodCleaningRule(),
    'iht': lambda: ius.InstanceHardnessThreshold(random_state=0),
    'cluster_centroids': lambda: ius.ClusterCentroids(random_state=0),
}


def _add_args(args):
  quick = getattr(args, 'quick', False)
  clients = getattr(args, 'clients', None) or (20 if quick else 1000)
  ref_clients = getattr(args, 'ref_clients', None) or (5 if quick else 50)
  samplers = getattr(args, 'samplers', None)
  samplers = samplers.split(',') if samplers else list(IMBLEARN)
  return clients, (64 if quick else 256), (32 if quick else 432), ref_clients, samplers


def run(args):
  clients, n, d, ref_clients, samplers = _add_args(args)
  cfg = RunConfig(num_clients=clients, samples_per_client=n, feature_dim=d, num_classes=2,
                  imbalance_ratio=10.0, test_per_class=1)
  data = load_federated(cfg).clients
  x, y, m = (jax.device_put(a) for a in (data.x, data.y, data.mask))
  keys = jax.random.split(jax.random.key(0), clients)
  xs, ys = np.asarray(data.x), np.asarray(data.y)
  for name in samplers:
    r = resample.make_resampler(name, num_classes=2, capacity=n,
                                max_class_count=federated.max_class_count(data, 2))
    t = time.perf_counter()
    f = jax.jit(jax.vmap(r.resample)).lower(keys, x, y, m).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(f(keys, x, y, m))  # warm-up
    t = time.perf_counter()
    jax.block_until_ready(f(keys, x, y, m))
    jax_s = time.perf_counter() - t
    timed = min(ref_clients, clients)
    t = time.perf_counter()
    failures = 0
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      for c in range(timed):
        try:
          IMBLEARN[name]().fit_resample(xs[c], ys[c])
        except (ValueError, RuntimeError):
          failures += 1
    ref_s = (time.perf_counter() - t) * clients / timed
    yield {'sampler': name, 'clients': clients, 'n': n, 'd': d, 'jax_s': round(jax_s, 4),
           'compile_s': round(compile_s, 2), 'imblearn_s': round(ref_s, 3),
           'ref_clients_timed': timed, 'ref_extrapolated': timed < clients,
           'imblearn_raised': failures, 'speedup': round(ref_s / max(jax_s, 1e-9), 1),
           'device': jax.devices()[0].device_kind}
