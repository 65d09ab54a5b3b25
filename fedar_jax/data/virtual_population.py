"""A virtual synthetic population: only a round's cohort is ever generated.

Synthetic client c depends only on (seed, c) (`synthetic.client_rng`), so a
population of any int32 size C needs no storage: `VirtualPopulation.cohort(ids)`
generates exactly the rows `synthetic.synthetic_federated` holds for those
clients, bit for bit, so a streamed run over it equals the in-memory run of the
same flags. Memory is O(cohort), whatever C is; with more than
`sampling.PERMUTATION_MAX_CLIENTS` clients the cohorts are drawn in O(cohort)
too (Floyd's algorithm).

The rows are generated on the host, by the thread that streams cohorts: the
generator is NumPy's SFC64 with a table lookup for the noise, which no device
PRNG reproduces, and bit-equality with the in-memory population is what makes a
virtual run checkable (docs/scale.md, "Virtual populations").

Attackers (--attacker_fraction) are refused for virtual populations: the
in-memory choice (`partition.choose_attackers`) draws round(f * C) clients out of
all C, which no O(cohort) rule reproduces; so is --standardize=federated, whose
moments are those of every client.
"""
import numpy as np

from fedar_jax import config as config_lib
from fedar_jax.data import cohort_scaling
from fedar_jax.data import synthetic
from fedar_jax.data.federated import ClientData


class VirtualPopulation:
  """A `cohort_source.CohortSource` of synthetic clients generated on demand.

  num_clients: C (any int32); capacity: samples_per_client N; row_shape: (D,);
  max_class_count: the largest class count of a client (the same for every client).
  The test set (float32[K * test_per_class, D]) is generated once, as
  `synthetic_federated` generates it.
  """

  def __init__(self, seed: int, num_clients: int, samples_per_client: int, num_classes: int,
               feature_dim: int, imbalance_ratio: float, test_per_class: int,
               skew: synthetic.Skew = synthetic.Skew()):
    self.seed = seed
    self.num_clients = int(num_clients)
    self.capacity = int(samples_per_client)
    self.row_shape = (int(feature_dim),)
    self.class_names = tuple(str(k) for k in range(num_classes))
    self.imbalance_ratio = float(imbalance_ratio)
    self.skew = skew
    self.problem = synthetic.make_problem(seed, num_classes, feature_dim)
    # Raises ValueError now, not in the streaming thread, if N cannot hold every class; the
    # largest class count a client can hold sizes the resampler.
    self.max_class_count = synthetic.max_class_count(samples_per_client, num_classes,
                                                     imbalance_ratio, skew)
    self.test = synthetic.synthetic_test(self.problem, seed, test_per_class)

  def cohort(self, client_ids: np.ndarray) -> ClientData:
    """Clients `client_ids` (int32[P] in [0, C)): x float32[P, N, D], y int32[P, N],
    mask bool[P, N] (all True), client_id = client_ids. Thread-safe (no shared state
    is written)."""
    ids = np.asarray(client_ids, np.int32)
    if ids.size and (ids.min() < 0 or ids.max() >= self.num_clients):
      raise ValueError(f'client ids must be in [0, {self.num_clients}), got '
                       f'[{ids.min()}, {ids.max()}]')
    return synthetic.synthetic_clients(self.problem, self.seed, ids, self.capacity,
                                       self.imbalance_ratio, self.skew)

  def attackers(self, client_ids: np.ndarray) -> None:
    """None: a virtual population has no attackers (the config refuses them)."""
    del client_ids
    return None


def source(cfg):
  """The virtual population of a run as it trains on it (--standardize=client applied to
  each cohort, `cohort_scaling.standardized`), or None where its clients are held in memory
  (`config.is_virtual`). cfg: a validated RunConfig."""
  if not config_lib.is_virtual(cfg):
    return None
  population = VirtualPopulation(cfg.effective_data_seed, cfg.num_clients,
                                 cfg.samples_per_client, cfg.num_classes, cfg.feature_dim,
                                 cfg.imbalance_ratio, cfg.test_per_class,
                                 synthetic.skew_of(cfg))
  return cohort_scaling.standardized(population, cfg.standardize)
