"""Dataset dispatch: a RunConfig in, padded federated arrays out."""
from typing import NamedTuple

from fedar_jax.data import federated
from fedar_jax.data import synthetic


class FederatedDataset(NamedTuple):
  """clients: ClientData x[C, N, ...]; test: balanced TestData; class_names: K strings."""
  clients: federated.ClientData
  test: federated.TestData
  class_names: tuple[str, ...]


def load_federated(cfg, client_ids=None) -> FederatedDataset:
  """Builds the clients and the test set that `cfg.dataset` names.

  client_ids: the clients to load (default all); a host of a multi-host run
  loads only its own.
  """
  if cfg.dataset == 'synthetic':
    clients, test = synthetic.synthetic_federated(
        cfg.seed, cfg.num_clients, cfg.samples_per_client, cfg.num_classes, cfg.feature_dim,
        cfg.imbalance_ratio, cfg.test_per_class,
        client_ids)
    return FederatedDataset(clients, test, tuple(str(k) for k in range(cfg.num_classes)))
  raise ValueError(f'unknown dataset {cfg.dataset!r}')
