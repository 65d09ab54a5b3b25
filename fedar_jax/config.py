"""Run configuration as data, and its validation.

`RunConfig` holds every setting of one run; `main.py` fills it from absl
flags. `validate` raises `ConfigError` naming the flag and what is allowed.
"""
import dataclasses
import math
import os
import typing

import numpy as np

from fedar_jax import data_dtype as data_dtype_lib
from fedar_jax import defences as defences_lib
from fedar_jax import methods as methods_lib
from fedar_jax import platforms
from fedar_jax.methods import registry
from fedar_jax import precision
from fedar_jax import privacy_accounting
from fedar_jax import sampling
from fedar_jax.data import fer2013
from fedar_jax.data import images
from fedar_jax.data import partition as partition_lib
from fedar_jax.data import standardize as standardize_lib
from fedar_jax.data import synthetic

DATASETS = registry.names('dataset')  # 'tfds:NAME': any tfds:<name>.
MODELS = registry.names('model')
LATENT_RESAMPLING = ('none', 'joint', 'frozen')
RESAMPLE_EVERY = ('once', 'round')
LOCAL_KERNELS = ('xla', 'pallas')
# What --local_kernel=pallas trains (local_kernel.py): {field: the one value it takes}.
PALLAS_KERNEL_SETTINGS = {'model': 'mlp', 'loss': 'ce', 'client_optimizer': 'adam',
                          'prox_mu': 0.0}
STANDARDIZE = standardize_lib.MODES
ACCOUNTANTS = privacy_accounting.ACCOUNTANTS
# resample.RESAMPLER_NAMES, named here so that checking flags needs no JAX (a test keeps
# the two equal).
RESAMPLERS = ('none', 'random_over', 'smote', 'borderline_smote1', 'borderline_smote2',
              'adasyn', 'kmeans_smote', 'svm_smote', 'smote_tomek', 'smote_enn',
              'random_under', 'nearmiss1', 'nearmiss2', 'nearmiss3', 'tomek', 'enn', 'renn',
              'allknn', 'cnn', 'oss', 'ncr', 'iht', 'cluster_centroids')


class ConfigError(ValueError):
  """A bad setting; str() is a one-line message that names the flag."""

  def __init__(self, flag: str, message: str):
    super().__init__(f'--{flag}: {message}')
    self.flag = flag


# RunConfig's flag groups, in order: title -> what its flags set. `--help` and
# docs/flags.md (docs/generate.py) list the flags under these titles (`groups`).
GROUPS = {
    'Data': 'the data source, its partition over clients, sizes and feature scaling',
    'Model': 'the model and its latent-space resampling',
    'FedAR': 'the gate and the client-side resampler',
    'Training': 'rounds, local training with its loss and optimizer, the server optimizer',
    'Attacks and defences': 'attacking clients and robust aggregation',
    'Privacy': 'central differential privacy (DP-FedAvg) and its accounting',
    'Scale and devices': 'client sampling and blocks, hosts, numerics and compilation',
    'Run': 'seeds and checkpoints',
}
_current_group = ['']  # The group of the fields defined next in RunConfig's body.


def _group(title: str) -> None:
  """Puts the RunConfig fields that follow in group `title` (a GROUPS key)."""
  if title not in GROUPS:
    raise KeyError(f'{title!r} is not in GROUPS')
  _current_group[0] = title


def _f(default, help_text: str):
  """A config field whose CLI flag help is `help_text`, in the group set last by `_group`."""
  return dataclasses.field(default=default,
                           metadata={'help': help_text, 'group': _current_group[0]})


def _method_params(namespace: dict, kind: str) -> None:
  """Defines, in RunConfig's body (`namespace` = its locals()), a field per registered
  parameter of the methods of `kind` (methods/builtin.py): name, type, default and help
  come from the registry, in declaration order."""
  annotations = namespace.setdefault('__annotations__', {})
  for p in registry.params(kind):
    annotations[p.name] = int if p.dtype == registry.INT32 else float
    namespace[p.name] = _f(p.default, p.help)


# The partitions synthetic data takes (data/synthetic.py, Skew): every client at the flags'
# ratio (or log-uniform up to --imbalance_ratio_max), or Dirichlet label skew.
SYNTHETIC_PARTITIONS = ('imbalance', 'dirichlet')


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One run's settings. Every field is also a CLI flag of the same name
  (`main.py` defines the flags from these fields and their help texts).

  Fields sit in groups: each `_group(title)` line puts the fields after it in
  that GROUPS entry (a field's `metadata['group']`); `--help` and docs/flags.md
  list the flags by group (`groups()`). A new field goes in its group's block.
  The methods' numeric parameters are declared in the method registry
  (methods/builtin.py); `_method_params(locals(), kind)` makes them fields here, after
  the flag that chooses the method.
  """
  _group('Data')
  dataset: str = _f('synthetic', f'Dataset: {", ".join(DATASETS)}.')
  data_path: str = _f('', 'Input file for latent_csv (.csv or .npz) and fer2013.')
  data_dir: str = _f('', 'Input directory for image_folder (one sub-folder per class) and '
                         'tfds:NAME (prepared TFDS data).')
  label_column: str = _f('class', 'latent_csv label column (class or Emotion).')
  client_column: str = _f('', 'latent_csv column of natural client ids (--partition=natural).')
  classes: tuple[str, ...] = _f((), 'Keep only these classes, relabelled 0..k-1 in this '
                                    'order: names (Happy,Sad) or label values (3,4).')
  image_size: int = _f(48, 'Image side after resizing (image sources).')
  color: str = _f('grayscale', f'Image channels: {", ".join(images.COLORS)}.')
  fer2013_usage: tuple[str, ...] = _f((), 'fer2013: keep rows with this Usage (Training, '
                                          'PublicTest, PrivateTest); empty keeps all.')
  tfds_split: str = _f('train', 'Split read from a tfds:NAME dataset.')
  num_clients: int = _f(10, 'Number of simulated clients C (--partition=natural: '
                        'one per distinct client id when not given).')
  samples_per_client: int = _f(220, 'Real samples per client N (real data, partitions other '
                                    'than imbalance: the mean; 0 = share out every row).')
  partition: str = _f('imbalance', f'How real data is split over clients: '
                                   f'{", ".join(partition_lib.PARTITIONS)} (synthetic: '
                                   f'{", ".join(SYNTHETIC_PARTITIONS)}).')
  dirichlet_alpha: float = _f(0.5, 'Dirichlet label-skew concentration (--partition=dirichlet).')
  imbalance_ratio_max: float = _f(0.0, 'If > --imbalance_ratio, each client draws its ratio '
                                       'log-uniformly from [imbalance_ratio, this].')
  imbalance_order: str = _f('random', 'imbalance partition: random (minority class drawn per '
                                     'client) or fixed (class order as --classes: first is '
                                     'every client\'s majority, last its minority).')
  shards_per_client: int = _f(2, 'Classes per client (--partition=shards).')
  quantity_exponent: float = _f(1.5, 'Pareto exponent of client sizes (--partition=quantity).')
  num_classes: int = _f(2, 'Number of classes K (synthetic data).')
  feature_dim: int = _f(432, 'Feature dimension D (synthetic data).')
  imbalance_ratio: float = _f(10.0, 'Per-client majority/minority class ratio (>= 1).')
  test_per_class: int = _f(500, 'Balanced test samples per class.')
  standardize: str = _f('none', f'Feature scaling before resampling and training: '
                                f'{", ".join(STANDARDIZE)} (see docs/design.md).')
  population: str = _f('', 'Directory of an on-disk population (fedar-population): each '
                           'round\'s cohort (--clients_per_round) is read from it while the '
                           'last round runs, so only two cohorts are ever in memory; the data '
                           'flags come from it (docs/scale.md, "Streamed cohorts").')
  virtual_population: bool = _f(False, 'Synthetic data: generate each round\'s cohort from '
                                       '(seed, client) instead of holding every client, so '
                                       '--num_clients may be any int32 (needs '
                                       '--clients_per_round or --client_fraction; no '
                                       'attackers). Automatic when the clients would not fit '
                                       'in memory (docs/scale.md).')

  _group('Model')
  model: str = _f('mlp', f'Model: {", ".join(MODELS)} (cnn: conv encoder + MLP head, images).')
  hidden: tuple[int, ...] = _f((10,), 'MLP (or CNN head) hidden widths, e.g. 10 or 64,32.')
  cnn_channels: tuple[int, ...] = _f((16, 32), 'CNN encoder conv widths (each conv halves H, W).')
  latent_dim: int = _f(64, 'CNN encoder output (latent) dimension.')
  latent_resampling: str = _f('none', f'CNN: {", ".join(LATENT_RESAMPLING)}: resample in the '
                                      'encoder latent space (see docs/data.md).')
  pretrain_epochs: int = _f(0, 'frozen: epochs of central encoder pretraining on the pooled '
                               'client data before federating the head (0: random encoder).')

  _group('FedAR')
  resampler: str = _f('smote', 'Client-side resampler (see docs/resamplers.md).')
  k_neighbors: int = _f(0, 'k_neighbors of the SMOTE family (SMOTE, Borderline, KMeans, SVM, '
                            'SMOTETomek/ENN); 0 = imbalanced-learn default (5; kmeans_smote 2).')
  m_neighbors: int = _f(0, 'm_neighbors of borderline_smote1/2 and svm_smote (danger/noise '
                            'test); 0 = imbalanced-learn default (10).')
  n_neighbors: int = _f(0, 'n_neighbors of adasyn, nearmiss1/2/3, enn, renn, allknn, ncr, cnn, '
                            'oss and smote_enn\'s ENN; 0 = imbalanced-learn default (adasyn 5, '
                            'cnn/oss 1, others 3).')
  threshold: float = _f(1.5, 'FedAR threshold: a client resamples iff its imbalance ratio '
                             'exceeds it (>= 1).')
  resample_every: str = _f('once', 'When clients resample: once (the paper\'s pre-training '
                                   'step: in the first round, kept on the device for later '
                                   'rounds) or round (every round, with fresh keys). With '
                                   '--latent_resampling the default is round.')

  _group('Training')
  rounds: int = _f(20, 'Federated rounds.')
  local_epochs: int = _f(5, 'Local epochs per round.')
  batch_size: int = _f(32, 'Local minibatch size.')
  learning_rate: float = _f(1e-3, 'Local learning rate (of --client_optimizer).')
  client_optimizer: str = _f('adam', 'Local optimizer: '
                             f'{", ".join(methods_lib.CLIENT_OPTIMIZERS)} (momentum 0.9).')
  _method_params(locals(), 'client_optimizer')
  loss: str = _f('ce', f'Client loss: {", ".join(methods_lib.LOSSES)}.')
  _method_params(locals(), 'loss')
  server_optimizer: str = _f('fedavg', 'Server optimizer on the pseudo-gradient: '
                             f'{", ".join(methods_lib.SERVER_OPTIMIZERS)}.')
  _method_params(locals(), 'server_optimizer')

  _group('Attacks and defences')
  attacker_fraction: float = _f(0.0, 'Fraction of clients that attack (--attack).')
  attack: str = _f('skew', f'Attacker data: {", ".join(partition_lib.ATTACKS)}.')
  attack_ratio: float = _f(100.0, 'skew attackers keep majority/ratio rows of each other class '
                                  '(0: the majority class only).')
  attack_target: int = _f(-1, 'skew/scale attackers: the class they all inflate; -1 = one '
                              'class drawn from the data seed.')
  _method_params(locals(), 'attack')
  aggregator: str = _f('mean', f'Server aggregator: {", ".join(methods_lib.AGGREGATORS)}.')
  _method_params(locals(), 'aggregator')
  defence: str = _f('', 'Named defence: sets the flags of its entry (docs/defences.md): '
                        f'{", ".join(defences_lib.NAMES)}; empty: no named defence (the '
                        'flags as given).')

  _group('Privacy')
  dp: str = _f('none', 'Central differential privacy (docs/privacy.md): none, fixed (DP-FedAvg, '
                       'clip norm --dp_clip_norm) or adaptive (the clip norm follows '
                       '--dp_target_quantile of the update norms).')
  _method_params(locals(), 'privacy')
  dp_accountant: str = _f('rdp', f'DP accountant for the epsilon column: '
                                 f'{", ".join(ACCOUNTANTS)} (dp_accounting).')
  dp_delta: float = _f(1e-5, 'DP: the delta of the reported (epsilon, delta), in (0, 1).')

  _group('Scale and devices')
  client_block: int = _f(0, 'Clients per block inside the compiled round (scan over blocks, '
                            'vmap inside one; bounds memory); 0 = automatic (1 for a CNN '
                            'on CPU, 25 for the MLP on CPU with more clients per round, '
                            'else the largest block whose compiled round fits the device: '
                            'all clients at once when they fit).')
  clients_per_round: int = _f(0, 'Clients sampled per round (keys from seed and round); '
                                 '0 = all, or --client_fraction.')
  client_fraction: float = _f(0.0, 'Fraction of clients sampled per round (used when '
                                   '--clients_per_round is 0); 0 = all.')
  client_sampling: str = _f('uniform', f'How a round\'s clients are sampled: '
                                       f'{", ".join(sampling.MODES)}: uniform (exactly '
                                       '--clients_per_round, without replacement) or poisson '
                                       '(each client joins with probability '
                                       'clients_per_round / num_clients; docs/privacy.md).')
  eval_clients: int = _f(0, 'Clients the new global model is also evaluated on every round, '
                            'each on its own rows (sampled from (seed, round) apart from the '
                            'training cohort): metrics.csv and sweep.csv end with the mean and '
                            '10th percentile of their G-mean and minority-class recall '
                            '(docs/design.md); 0 = off (no such columns).')
  cpu_devices: int = _f(1, 'CPU: the XLA devices the CPU is split into; the clients of a '
                           'round (and the points of a sweep) are sharded over them and each '
                           'device runs its share on its own thread, so several cores work on '
                           'one round; 0 = one per core this process may use (at most 256), '
                           '1 = one device (or what '
                           'XLA_FLAGS=--xla_force_host_platform_device_count sets). '
                           'Results equal one device\'s to float32 reordering '
                           '(docs/scale.md). CPU backend only: no effect on a GPU or TPU.')
  coordinator_address: str = _f('', 'Multi-host: host:port of process 0 for '
                                    'jax.distributed; "auto" detects it (TPU pods); '
                                    'empty = one process.')
  num_processes: int = _f(1, 'Multi-host: number of processes (hosts).')
  process_id: int = _f(0, 'Multi-host: this process\'s index in [0, --num_processes).')
  coordinator_timeout_s: int = _f(120, 'Multi-host: seconds to wait for every process to join '
                                       'at --coordinator_address; past it the command ends '
                                       'with one line naming the address (exit 2).')
  matmul_precision: str = _f('default', f'Float32 matmul/conv precision of training and '
                                        f'evaluation: {", ".join(precision.PRECISIONS)} (see '
                                        f'docs/design.md; neighbour search is always highest).')
  data_dtype: str = _f('float32', 'Dtype of the client features on the device: '
                                  f'{", ".join(data_dtype_lib.DTYPES)} (bfloat16: half the '
                                  'bytes, arithmetic in float32; see docs/design.md).')
  local_kernel: str = _f('xla', f'Local training of a client: {", ".join(LOCAL_KERNELS)}: xla '
                               '(the XLA program of client.py) or pallas (one fused Pallas '
                               'kernel per client, local_kernel.py: the MLP with --loss=ce, '
                               '--client_optimizer=adam, --prox_mu=0; Pallas interpret mode '
                               'on a CPU, slow, for checking). Same results to float32 '
                               'reordering (docs/scale.md).')
  fast_compile: bool = _f(False, 'GPU: compile the rounds without Triton GEMM fusions '
                                 '(cuBLAS only), skipping XLA\'s GEMM autotuning (the '
                                 'pre-training step always is): a faster compile for a slower '
                                 'round (docs/scale.md, "Compile time"). For runs of few rounds '
                                 'or --resample_every=round. No effect on CPU.')

  _group('Run')
  seed: int = _f(0, 'Seed for data, initialisation and all client randomness.')
  data_seed: int = _f(-1, 'Seed for the data alone; -1 uses --seed. A sweep shares one data '
                          'set across its --seeds.')
  checkpoint_every: int = _f(5, 'Save an Orbax checkpoint in WORKDIR/checkpoints every this many '
                                'rounds (and after the last); rerunning the same command resumes.')
  keep_checkpoints: int = _f(3, 'Number of newest checkpoints kept.')

  def replace(self, **changes) -> 'RunConfig':
    return dataclasses.replace(self, **changes)

  @property
  def effective_data_seed(self) -> int:
    """The seed the data is drawn with: --data_seed, or --seed when that is -1."""
    return self.data_seed if self.data_seed >= 0 else self.seed

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    for name, value in d.items():
      if isinstance(value, tuple):
        d[name] = list(value)
    return d


def groups() -> list[tuple[str, list[dataclasses.Field]]]:
  """[(group title, its RunConfig fields in definition order)] in GROUPS order."""
  fields = dataclasses.fields(RunConfig)
  stray = [f.name for f in fields if f.metadata.get('group') not in GROUPS]
  if stray:
    raise ValueError(f'RunConfig fields outside a group (define them after a _group call): '
                     f'{", ".join(stray)}')
  return [(title, [f for f in fields if f.metadata['group'] == title]) for title in GROUPS]


def _at_least(cfg, name, low):
  value = getattr(cfg, name)
  if value < low:
    raise ConfigError(name, f'must be >= {low:g}, got {value:g}')


INT32_MAX = 2 ** 31 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _validate_numbers(cfg: RunConfig) -> None:
  """Every float flag finite in float32, every int flag (and list element) in int32."""
  hints = typing.get_type_hints(RunConfig)
  for field in dataclasses.fields(RunConfig):
    kind, value = hints[field.name], getattr(cfg, field.name)
    values = value if typing.get_origin(kind) is tuple else (value,)
    for v in values:
      if isinstance(v, float) and not (math.isfinite(v) and abs(v) <= FLOAT32_MAX):
        raise ConfigError(field.name, f'must be a finite float32 number, got {v:g}')
      if isinstance(v, int) and not isinstance(v, bool) and not -INT32_MAX - 1 <= v <= INT32_MAX:
        raise ConfigError(field.name, f'{v} is outside the int32 range '
                          f'[{-INT32_MAX - 1}, {INT32_MAX}]')
  if cfg.seed < 0:
    raise ConfigError('seed', f'must be >= 0, got {cfg.seed}')
  if cfg.learning_rate > 0 and np.float32(cfg.learning_rate) < np.finfo(np.float32).tiny:
    raise ConfigError('learning_rate', f'{cfg.learning_rate:g} is 0 (or denormal) in float32; '
                      f'the smallest usable value is {float(np.finfo(np.float32).tiny):g}')


# The ranges of the float flags that are not method parameters (those are declared in the
# method registry). Every range is checked in one place, `_validate_ranges`, on the value
# as the round holds it (float32 / int32).
RANGES = (
    registry.Bound('imbalance_ratio', 1),
    registry.Bound('threshold', 1),
    registry.Bound('learning_rate', 0, low_closed=False),
    registry.Bound('client_fraction', 0, 1, high_closed=True),
    registry.Bound('attacker_fraction', 0, 1, high_closed=True),
    registry.Bound('dirichlet_alpha', 0, low_closed=False),
    registry.Bound('quantity_exponent', 0, low_closed=False),
    registry.Bound('dp_delta', 0, 1, low_closed=False),
    registry.Bound('cpu_devices', 0, platforms.MAX_CPU_DEVICES, high_closed=True),
)


def bounds() -> tuple[registry.Bound, ...]:
  """Every ranged numeric flag: RANGES, then each registered method parameter that is a
  RunConfig field."""
  return RANGES + tuple(p.bound for p in registry.params()
                        if p.name in RunConfig.__dataclass_fields__)


def _validate_ranges(cfg: RunConfig) -> None:
  """Each flag of `bounds()` in its range, as given and as float32/int32."""
  for bound in bounds():
    problem = bound.problem(getattr(cfg, bound.name))
    if problem:
      raise ConfigError(bound.name, problem)


def _memory_bytes() -> int:
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError):
    return 0


def data_bytes(cfg: RunConfig) -> int | None:
  """A lower bound on the bytes of one process's client data (in --data_dtype) and float32
  test data, before resampling, plus one float32 minibatch per client in flight (a client's
  rows are padded up to --batch_size); None where the row size comes from a file (latent_csv,
  tfds, a --population)."""
  if cfg.population:
    return None
  if cfg.dataset == 'synthetic':
    row = cfg.feature_dim
  elif cfg.dataset in ('fer2013', 'image_folder'):
    row = cfg.image_size ** 2 * (1 if cfg.color == 'grayscale' else 3)
  else:
    return None
  clients = -(-cfg.num_clients // max(cfg.num_processes, 1))
  test_rows = cfg.test_per_class * (cfg.num_classes if cfg.dataset == 'synthetic' else 1)
  confusion = cfg.num_classes ** 2 if cfg.dataset == 'synthetic' else 0  # int32[K, K] metrics
  in_flight = min(cfg.client_block or clients, clients)
  client_bytes = 2 if cfg.data_dtype == 'bfloat16' else 4
  return (client_bytes * row * clients * cfg.samples_per_client
          + 4 * (row * (test_rows + in_flight * cfg.batch_size) + confusion))


def is_virtual(cfg: RunConfig) -> bool:
  """Whether the run's population is virtual (data/virtual_population.py): synthetic data
  with a sampled cohort, and --virtual_population or clients whose data alone would not fit
  in this machine's memory (`data_bytes`), the populations refused before virtual ones."""
  if (cfg.dataset != 'synthetic' or cfg.population
      or not (cfg.clients_per_round or cfg.client_fraction)):
    return False
  if cfg.virtual_population:
    return True
  need, have = data_bytes(cfg), _memory_bytes()
  return bool(have) and need is not None and need > have


def _validate_virtual(cfg: RunConfig) -> None:
  """A virtual population is synthetic, sampled, and has no attackers."""
  if cfg.virtual_population and cfg.population:
    raise ConfigError('virtual_population', 'is for synthetic data, not --population')
  if cfg.virtual_population and cfg.dataset != 'synthetic':
    raise ConfigError('virtual_population', f'needs --dataset=synthetic, not {cfg.dataset}')
  if cfg.virtual_population and not (cfg.clients_per_round or cfg.client_fraction):
    raise ConfigError('virtual_population', 'needs --clients_per_round or --client_fraction '
                      '(a virtual population trains a sampled cohort)')
  if cfg.standardize == 'federated' and is_virtual(cfg):
    raise ConfigError('standardize', 'federated is not supported with a virtual population '
                      '(its moments are those of every client); use client or none')
  if cfg.attacker_fraction and is_virtual(cfg):
    raise ConfigError('attacker_fraction', 'is not supported with a virtual population '
                      '(--virtual_population, or synthetic clients that do not fit in '
                      'memory): the attackers are drawn over every client')


def _validate_memory(cfg: RunConfig) -> None:
  """Refuses sizes whose data alone cannot fit in this machine's memory, before allocating;
  a virtual population holds two cohorts (the round's and the next) instead of every client."""
  clients = 'num_clients'
  if is_virtual(cfg):
    clients = 'clients_per_round'
    cohort = sampling.clients_per_round(cfg.num_clients, cfg.clients_per_round,
                                        cfg.client_fraction)
    cfg = cfg.replace(num_clients=min(cfg.num_clients, 2 * cohort), clients_per_round=cohort)
  need, have = data_bytes(cfg), _memory_bytes()
  if need is None or not have or need <= have:
    return
  sizes = {clients: getattr(cfg, clients), 'samples_per_client': cfg.samples_per_client,
           'test_per_class': cfg.test_per_class, 'num_classes': cfg.num_classes,
           'batch_size': cfg.batch_size,
           'feature_dim' if cfg.dataset == 'synthetic' else 'image_size':
           cfg.feature_dim if cfg.dataset == 'synthetic' else cfg.image_size}
  # Name the size furthest above its default.
  flag = max(sizes, key=lambda n: sizes[n] / max(RunConfig.__dataclass_fields__[n].default, 1))
  raise ConfigError(flag, f'{sizes[flag]} makes the data alone need at least '
                    f'{need / 2 ** 30:.3g} GiB, more than this machine\'s '
                    f'{have / 2 ** 30:.3g} GiB of memory')


def validate(cfg: RunConfig, host_memory: bool = True) -> RunConfig:
  """Checks a config; returns it unchanged or raises ConfigError. host_memory: refuse
  data larger than this machine's memory (off where the run is for another machine)."""
  _validate_numbers(cfg)
  _validate_ranges(cfg)
  if registry.dataset_source(cfg.dataset) not in registry.names('dataset'):
    raise ConfigError('dataset', f'unknown dataset {cfg.dataset!r}; allowed: '
                      f'{", ".join(registry.names("dataset"))}')
  _validate_data(cfg)
  if cfg.resampler not in RESAMPLERS:
    raise ConfigError('resampler', f'unknown resampler {cfg.resampler!r}; allowed: '
                      f'{", ".join(RESAMPLERS)}')
  for name, low in (('num_clients', 1), ('num_classes', 2), ('feature_dim', 1),
                    ('samples_per_client', 1 if cfg.partition == 'imbalance' else 0),
                    ('test_per_class', 1), ('rounds', 1),
                    ('local_epochs', 1), ('batch_size', 1), ('k_neighbors', 0),
                    ('m_neighbors', 0), ('n_neighbors', 0), ('checkpoint_every', 1),
                    ('keep_checkpoints', 1), ('data_seed', -1)):
    _at_least(cfg, name, low)
  if not cfg.hidden or min(cfg.hidden) < 1:
    raise ConfigError('hidden', f'must be a list of positive widths, got {list(cfg.hidden)}')
  _validate_scale(cfg)
  _validate_virtual(cfg)
  _validate_methods(cfg)
  _validate_local_kernel(cfg)
  if host_memory:
    _validate_memory(cfg)
  _validate_numerics(cfg)
  if cfg.partition != 'imbalance':
    return cfg
  ratio, flag = cfg.imbalance_ratio, 'imbalance_ratio'
  if cfg.imbalance_ratio_max > ratio:
    ratio, flag = cfg.imbalance_ratio_max, 'imbalance_ratio_max'
  need = synthetic.min_samples_for_ratio(cfg.num_classes, ratio)
  if cfg.samples_per_client < need:
    raise ConfigError('samples_per_client',
                      f'{cfg.samples_per_client} cannot hold one sample of each of '
                      f'{cfg.num_classes} classes at --{flag}={ratio:g}; '
                      f'need at least {need}')
  return cfg


def _validate_scale(cfg: RunConfig) -> None:
  for name in ('client_block', 'clients_per_round', 'eval_clients'):
    _at_least(cfg, name, 0)
  if cfg.eval_clients > cfg.num_clients:
    raise ConfigError('eval_clients', f'{cfg.eval_clients} is more than '
                      f'--num_clients={cfg.num_clients}')
  if cfg.clients_per_round > cfg.num_clients:
    raise ConfigError('clients_per_round', f'{cfg.clients_per_round} is more than '
                      f'--num_clients={cfg.num_clients}')
  if cfg.client_fraction and cfg.clients_per_round:
    raise ConfigError('client_fraction', 'give either --clients_per_round or '
                      '--client_fraction, not both')
  _at_least(cfg, 'num_processes', 1)
  _at_least(cfg, 'coordinator_timeout_s', 1)
  if not 0 <= cfg.process_id < cfg.num_processes:
    raise ConfigError('process_id', f'must be in [0, {cfg.num_processes}), got {cfg.process_id}')
  if cfg.num_processes > 1 and not cfg.coordinator_address:
    raise ConfigError('coordinator_address', 'is required with --num_processes > 1')
  if cfg.coordinator_address not in ('', 'auto') and ':' not in cfg.coordinator_address:
    raise ConfigError('coordinator_address', f'expected host:port or auto, got '
                      f'{cfg.coordinator_address!r}')


def _validate_methods(cfg: RunConfig) -> None:
  """Checks the server optimizer, aggregator, client loss and client optimizer flags (their
  numeric parameters' ranges: `_validate_ranges`)."""
  for kind in ('server_optimizer', 'aggregator', 'loss', 'client_optimizer'):
    _choice(cfg, registry.KINDS[kind], registry.names(kind))
  if cfg.aggregator in ('krum', 'multi_krum'):
    n = sampling.clients_per_round(cfg.num_clients, cfg.clients_per_round, cfg.client_fraction)
    if 2 * cfg.byzantine_clients + 2 >= n:
      raise ConfigError('byzantine_clients', f'{cfg.byzantine_clients} is too many for '
                        f'{n} clients per round (Krum needs 2f + 2 < {n})')
  if cfg.defence:
    _choice(cfg, 'defence', defences_lib.NAMES)
    check_defence(cfg.defence, {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
  _at_least(cfg, 'attack_target', -1)
  if cfg.dataset == 'synthetic' and cfg.attack_target >= cfg.num_classes:
    raise ConfigError('attack_target', f'{cfg.attack_target} is not a class of '
                      f'--num_classes={cfg.num_classes}')
  if cfg.attack == 'scale' and cfg.attacker_fraction and cfg.num_processes > 1:
    raise ConfigError('attack', 'scale attacks run in one process')
  _validate_privacy(cfg)
  if cfg.latent_resampling != 'none':
    for name in ('loss', 'client_optimizer', 'prox_mu'):
      if getattr(cfg, name) != RunConfig.__dataclass_fields__[name].default:
        raise ConfigError(name, f'is not supported with --latent_resampling='
                          f'{cfg.latent_resampling} (its own local update)')


def _validate_local_kernel(cfg: RunConfig) -> None:
  """--local_kernel, and the settings --local_kernel=pallas cannot train (any value of a
  PALLAS_KERNEL_SETTINGS field but the one it takes)."""
  _choice(cfg, 'local_kernel', LOCAL_KERNELS)
  if cfg.local_kernel != 'pallas':
    return
  def shown(value):
    return f'{value:g}' if isinstance(value, float) else value
  for field, value in PALLAS_KERNEL_SETTINGS.items():
    if getattr(cfg, field) != value:
      raise ConfigError('local_kernel', f'pallas trains --{field}={shown(value)} only, not '
                        f'--{field}={shown(getattr(cfg, field))}')


def _validate_privacy(cfg: RunConfig) -> None:
  """--dp, --client_sampling and --dp_accountant, and the combinations whose DP guarantee
  does not hold as implemented (docs/privacy.md)."""
  _choice(cfg, 'dp', registry.names('privacy'))
  _choice(cfg, 'client_sampling', sampling.MODES)
  _choice(cfg, 'dp_accountant', ACCOUNTANTS)
  per_round = sampling.clients_per_round(cfg.num_clients, cfg.clients_per_round,
                                         cfg.client_fraction)
  if cfg.client_sampling == 'poisson' and per_round >= cfg.num_clients:
    raise ConfigError('client_sampling', 'poisson needs --clients_per_round (or '
                      '--client_fraction) below --num_clients: each client joins with '
                      'probability clients_per_round / num_clients')
  if cfg.client_sampling == 'poisson' and (cfg.population or is_virtual(cfg)):
    raise ConfigError('client_sampling', 'poisson is not supported with a streamed '
                      '(--population) or virtual population, whose cohorts are drawn '
                      'uniformly on the host; use --client_sampling=uniform')
  if cfg.dp == 'none':
    return
  if cfg.aggregator != 'mean':
    raise ConfigError('aggregator', f'{cfg.aggregator} with --dp={cfg.dp}: DP-FedAvg releases '
                      'only the noised sum of clipped updates; use --aggregator=mean')
  if (cfg.dp_accountant == 'pld' and cfg.client_sampling == 'uniform'
      and per_round < cfg.num_clients):
    raise ConfigError('dp_accountant', 'pld has no event for uniform fixed-size sampling; '
                      'use --client_sampling=poisson or --dp_accountant=rdp')


def check_defence(defence: str, given: dict, flag: str = 'defence') -> None:
  """Refuses a named defence that sets a field of `given` ({field: value given}) to
  another value: raises ConfigError(flag) naming the field. '' (no named defence) passes."""
  for field, value in defences_lib.flags_of(defence).items():
    if field in given and given[field] != value:
      raise ConfigError(flag, f'{defence} sets --{field}={value}; drop --{field}={given[field]}')


def _validate_numerics(cfg: RunConfig) -> None:
  _choice(cfg, 'matmul_precision', precision.PRECISIONS)
  if cfg.cpu_devices != 1 and platforms.forced_device_count():
    raise ConfigError('cpu_devices', f'{cfg.cpu_devices} and XLA_FLAGS='
                      f'{platforms.FORCE_DEVICE_COUNT} both set the CPU device count; give one')
  _choice(cfg, 'data_dtype', data_dtype_lib.DTYPES)
  _choice(cfg, 'standardize', STANDARDIZE)


def _choice(cfg, name, allowed):
  if getattr(cfg, name) not in allowed:
    raise ConfigError(name, f'unknown value {getattr(cfg, name)!r}; allowed: {", ".join(allowed)}')


def _validate_data(cfg: RunConfig) -> None:
  """Checks the real-data, partition and model flags."""
  _choice(cfg, 'partition', partition_lib.PARTITIONS)
  _choice(cfg, 'attack', partition_lib.ATTACKS)
  _choice(cfg, 'imbalance_order', partition_lib.IMBALANCE_ORDERS)
  _choice(cfg, 'color', images.COLORS)
  _choice(cfg, 'model', registry.names('model'))
  _choice(cfg, 'latent_resampling', LATENT_RESAMPLING)
  _choice(cfg, 'resample_every', RESAMPLE_EVERY)
  if cfg.dataset == 'synthetic':
    if cfg.partition not in SYNTHETIC_PARTITIONS:
      raise ConfigError('partition', f'{cfg.partition} applies to real data only; synthetic '
                        f'data takes {" or ".join(SYNTHETIC_PARTITIONS)}')
    for name in ('classes', 'client_column', 'imbalance_order'):
      if getattr(cfg, name) != RunConfig.__dataclass_fields__[name].default:
        raise ConfigError(name, 'applies to real data only (synthetic class 0 is every '
                          'client\'s majority, class K-1 its minority)')
    if cfg.model == 'cnn':
      raise ConfigError('model', 'cnn needs image data (--dataset=fer2013, image_folder or tfds)')
  if not cfg.label_column.strip():
    raise ConfigError('label_column', 'is empty; name the label column (class or Emotion)')
  if cfg.latent_resampling != 'none' and cfg.model != 'cnn':
    raise ConfigError('latent_resampling', f'{cfg.latent_resampling} needs --model=cnn')
  if cfg.resample_every == 'once' and cfg.latent_resampling != 'none':
    raise ConfigError('resample_every', f'once is not supported with --latent_resampling='
                      f'{cfg.latent_resampling} (the CNN update resamples encoder outputs every '
                      f'round); use --resample_every=round')
  if cfg.attack_ratio != 0 and cfg.attack_ratio < 1:
    raise ConfigError('attack_ratio', f'must be 0 or >= 1, got {cfg.attack_ratio:g}')
  for name, low in (('image_size', 4), ('shards_per_client', 1), ('latent_dim', 1),
                    ('pretrain_epochs', 0)):
    _at_least(cfg, name, low)
  if not cfg.cnn_channels or min(cfg.cnn_channels) < 1:
    raise ConfigError('cnn_channels', f'must be a list of positive widths, got '
                      f'{list(cfg.cnn_channels)}')
  if cfg.image_size < 2 ** len(cfg.cnn_channels):
    raise ConfigError('image_size', f'{cfg.image_size} is too small for '
                      f'{len(cfg.cnn_channels)} conv layers (each halves the side)')
  bad = [u for u in cfg.fer2013_usage if u not in fer2013.USAGES]
  if bad:
    raise ConfigError('fer2013_usage', f'unknown usage {bad[0]!r}; allowed: '
                      f'{", ".join(fer2013.USAGES)}')
