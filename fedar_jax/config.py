"""Run configuration as data, and its validation.

`RunConfig` holds every setting of one run; `main.py` fills it from absl
flags. `validate` raises `ConfigError` naming the flag and what is allowed.
"""
import dataclasses
import os

from fedar_jax import resample
from fedar_jax.data import synthetic

DATASETS = ('synthetic',)


class ConfigError(ValueError):
  """A bad setting; str() is a one-line message that names the flag."""

  def __init__(self, flag: str, message: str):
    super().__init__(f'--{flag}: {message}')
    self.flag = flag


def _f(default, help_text: str):
  """A config field whose CLI flag help is `help_text`."""
  return dataclasses.field(default=default, metadata={'help': help_text})


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One run's settings. Every field is also a CLI flag of the same name
  (`main.py` defines the flags from these fields and their help texts)."""
  # --- Data ---
  dataset: str = _f('synthetic', f'Dataset: {", ".join(DATASETS)}.')
  num_clients: int = _f(10, 'Number of simulated clients C.')
  samples_per_client: int = _f(220, 'Real samples per client N.')
  num_classes: int = _f(2, 'Number of classes K (synthetic data).')
  feature_dim: int = _f(432, 'Feature dimension D (synthetic data).')
  imbalance_ratio: float = _f(10.0, 'Per-client majority/minority class ratio (>= 1).')
  test_per_class: int = _f(500, 'Balanced test samples per class.')
  # --- Model and local training ---
  hidden: tuple[int, ...] = _f((10,), 'MLP hidden widths, e.g. 10 or 64,32.')
  rounds: int = _f(20, 'Federated rounds.')
  local_epochs: int = _f(5, 'Local epochs per round.')
  batch_size: int = _f(32, 'Local minibatch size.')
  learning_rate: float = _f(1e-3, 'Local Adam learning rate.')
  # --- FedAR gate and resampling ---
  resampler: str = _f('smote', 'Client-side resampler (see README).')
  k_neighbors: int = _f(0, 'k_neighbors of the SMOTE family (SMOTE, Borderline, KMeans, SVM, '
                            'SMOTETomek/ENN); 0 = imbalanced-learn default (5; kmeans_smote 2).')
  m_neighbors: int = _f(0, 'm_neighbors of borderline_smote1/2 and svm_smote (danger/noise '
                            'test); 0 = imbalanced-learn default (10).')
  n_neighbors: int = _f(0, 'n_neighbors of adasyn, nearmiss1/2/3, enn, renn, allknn, ncr, cnn, '
                            'oss and smote_enn\'s ENN; 0 = imbalanced-learn default (adasyn 5, '
                            'cnn/oss 1, others 3).')
  threshold: float = _f(1.5, 'FedAR threshold: a client resamples iff its imbalance ratio '
                             'exceeds it (>= 1).')
  # --- Run ---
  seed: int = _f(0, 'Seed for data, initialisation and all client randomness.')

  def replace(self, **changes) -> 'RunConfig':
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['hidden'] = list(self.hidden)
    return d


def _at_least(cfg, name, low):
  value = getattr(cfg, name)
  if value < low:
    raise ConfigError(name, f'must be >= {low:g}, got {value:g}')


def validate(cfg: RunConfig) -> RunConfig:
  """Checks a config; returns it unchanged or raises ConfigError."""
  if cfg.dataset not in DATASETS:
    raise ConfigError('dataset', f'unknown dataset {cfg.dataset!r}; allowed: {", ".join(DATASETS)}')
  if cfg.resampler not in resample.RESAMPLER_NAMES:
    raise ConfigError('resampler', f'unknown resampler {cfg.resampler!r}; allowed: '
                      f'{", ".join(resample.RESAMPLER_NAMES)}')
  for name, low in (('num_clients', 1), ('num_classes', 2), ('feature_dim', 1),
                    ('samples_per_client', 1), ('test_per_class', 1), ('rounds', 1),
                    ('local_epochs', 1), ('batch_size', 1), ('k_neighbors', 0),
                    ('m_neighbors', 0), ('n_neighbors', 0),
                    ('imbalance_ratio', 1), ('threshold', 1)):
    _at_least(cfg, name, low)
  if not cfg.learning_rate > 0:
    raise ConfigError('learning_rate', f'must be > 0, got {cfg.learning_rate:g}')
  if not cfg.hidden or min(cfg.hidden) < 1:
    raise ConfigError('hidden', f'must be a list of positive widths, got {list(cfg.hidden)}')
  need = synthetic.min_samples_for_ratio(cfg.num_classes, cfg.imbalance_ratio)
  if cfg.samples_per_client < need:
    raise ConfigError('samples_per_client',
                      f'{cfg.samples_per_client} cannot hold one sample of each of '
                      f'{cfg.num_classes} classes at --imbalance_ratio={cfg.imbalance_ratio:g}; '
                      f'need at least {need}')
  return cfg


def check_workdir(workdir: str) -> None:
  """Raises ConfigError unless `workdir` is empty/absent or a directory."""
  if not workdir:
    raise ConfigError('workdir', 'is required')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError('workdir', f'{workdir!r} exists and is not a directory')
