"""Sizes checked before allocating: lower bounds on the memory of decoded images and of
the model, so absurd sizes end with one line instead of a hang or unbounded growth.

  `decoded_image_bytes(cfg)`: the float32 image pool an image source decodes (every
      image of the file or folder, at --image_size), from the file's size or the
      folder's file count, before anything is read.
  `model_bytes(cfg, row_shape, num_classes)`: the parameter count from
      `jax.eval_shape` of the model's init (mlp, cnn) or of a registered model's
      builder (nothing allocated), then a lower bound on the training memory: the
      server's parameters, one client's copy and its gradient, and one minibatch's
      activations, per client in flight.

Both are lower bounds: what they refuse cannot fit; what they pass may still not
(the compiled round's own check, `client_block_fit`, comes later). The commands call
`check_before_loading` once JAX is up and before any data is read; `train.build`
calls `check_model` again on the data's shapes.
"""
import functools
import math
import os

from fedar_jax.config import ConfigError, RunConfig

FLOAT32 = 4
# The longest FER2013 CSV row: a label, 48 x 48 pixels as '255 ', a Usage name.
FER_ROW_BYTES = 2 + 48 * 48 * 4 + 16


def _channels(cfg: RunConfig) -> int:
  return 1 if cfg.color == 'grayscale' else 3


def decoded_image_bytes(cfg: RunConfig) -> int | None:
  """A lower bound on the bytes of the float32[T, S, S, ch] pool the image source of `cfg`
  decodes (S = --image_size); None where T is unknown before reading (tfds, an
  --fer2013_usage selection) or the source holds no images."""
  row = cfg.image_size ** 2 * _channels(cfg) * FLOAT32
  if cfg.dataset == 'fer2013' and not cfg.fer2013_usage:
    try:
      return os.path.getsize(cfg.data_path) // FER_ROW_BYTES * row
    except OSError:
      return None
  if cfg.dataset == 'image_folder':
    return _image_files(cfg.data_dir) * row
  return None


@functools.lru_cache(maxsize=8)
def _image_files(root: str) -> int:
  """The regular files in `root`'s class folders (0 where they cannot be listed); counted
  once per process (a sweep validates every point)."""
  count = 0
  try:
    classes = [e.path for e in os.scandir(root) if e.is_dir() and not e.name.startswith('.')]
    for folder in classes:
      count += sum(1 for e in os.scandir(folder) if not e.name.startswith('.') and e.is_file())
  except OSError:
    pass
  return count


def check_decoded_images(cfg: RunConfig, have: int) -> None:
  """Raises ConfigError naming --image_size if the decoded images alone need more than
  `have` bytes."""
  need = decoded_image_bytes(cfg)
  if need is None or not have or need <= have:
    return
  raise ConfigError('image_size', f'{cfg.image_size} makes the decoded images of '
                    f'{cfg.data_path or cfg.data_dir} alone need at least {_gib(need)} GiB, '
                    f'more than this machine\'s {_gib(have)} GiB of memory')


BUILTIN_MODELS = ('mlp', 'cnn')


@functools.lru_cache(maxsize=64)
def param_count(model: str, hidden: tuple, latent_dim: int, cnn_channels: tuple,
                row_shape: tuple, num_classes: int) -> int | None:
  """Parameters of the built-in --model (mlp, cnn) on rows of `row_shape`, from
  `jax.eval_shape` of its init (no array is allocated); None for any other model."""
  import jax
  import jax.numpy as jnp
  from fedar_jax import models
  if model == 'mlp':
    net, x = models.MLP(num_classes=num_classes, hidden=hidden), (1, math.prod(row_shape))
  elif model == 'cnn' and len(row_shape) == 3:
    net, x = models.cnn(num_classes, hidden, latent_dim, cnn_channels, patches=False), (
        (1,) + row_shape)
  else:
    return None
  shapes = jax.eval_shape(net.init, jax.random.key(0), jax.ShapeDtypeStruct(x, jnp.float32))
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


@functools.lru_cache(maxsize=16)
def registered_param_count(cfg: RunConfig, row_shape: tuple, num_classes: int) -> int | None:
  """Parameters of a registered --model: `jax.eval_shape` of its builder on one zero row of
  `row_shape` (data/load.py `one_row_dataset`) with the `none` resampler, so the builder's
  traced arrays are never allocated; None for a builder that needs concrete values (one
  that reads its arrays back), which the estimate cannot see."""
  import jax
  from fedar_jax import resample
  from fedar_jax.data import load
  from fedar_jax.methods import registry
  build = registry.resolve('model', cfg.model)
  data = load.one_row_dataset(row_shape, num_classes)
  resampler = resample.make_resampler('none', num_classes=num_classes, capacity=1)
  try:
    shapes = jax.eval_shape(lambda: build(cfg, data, resampler).params)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
          jax.errors.TracerIntegerConversionError, jax.errors.TracerBoolConversionError):
    return None
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


def model_param_count(cfg: RunConfig, row_shape: tuple, num_classes: int) -> int | None:
  """Parameters of `cfg`'s model on rows of `row_shape` with K = `num_classes`, any
  registered model (`param_count` for the built-ins, else `registered_param_count`)."""
  if cfg.model in BUILTIN_MODELS:
    return param_count(cfg.model, tuple(cfg.hidden), cfg.latent_dim, tuple(cfg.cnn_channels),
                       tuple(row_shape), num_classes)
  return registered_param_count(cfg, tuple(row_shape), num_classes)


def activations_per_row(cfg: RunConfig, row_shape: tuple, num_classes: int) -> int:
  """A lower bound on the float32 activations one row keeps through the model: its input,
  the first conv layer's output (cnn), the latent (cnn) and every hidden layer (mlp, cnn);
  its input and its K logits (any other model, whose layers are unknown)."""
  count = math.prod(row_shape)
  if cfg.model not in BUILTIN_MODELS:
    return count + num_classes
  count += sum(cfg.hidden)
  if cfg.model == 'cnn' and len(row_shape) == 3:
    count += row_shape[0] * row_shape[1] * cfg.cnn_channels[0] + cfg.latent_dim
  return count


def model_bytes(cfg: RunConfig, row_shape: tuple, num_classes: int) -> int | None:
  """A lower bound on the bytes training `cfg`'s model needs on one device (module doc);
  None for a model whose parameters cannot be counted (`model_param_count`)."""
  params = model_param_count(cfg, row_shape, num_classes)
  if params is None:
    return None
  in_flight = max(cfg.client_block, 1)
  per_client = 2 * params + cfg.batch_size * activations_per_row(cfg, row_shape, num_classes)
  return FLOAT32 * (params + in_flight * per_client)


# The flags that size the model, by the kind of model (any other model: every sizing flag,
# since its builder may read any of them).
_MODEL_FLAGS = {'mlp': ('hidden', 'feature_dim', 'image_size', 'batch_size', 'client_block'),
                'cnn': ('hidden', 'latent_dim', 'cnn_channels', 'image_size', 'batch_size',
                        'client_block')}
_ANY_MODEL_FLAGS = ('hidden', 'latent_dim', 'cnn_channels', 'feature_dim', 'image_size',
                    'batch_size', 'client_block')


def _largest(value) -> int:
  return max(value) if isinstance(value, tuple) else value


def check_model(cfg: RunConfig, row_shape: tuple, num_classes: int, have: int) -> None:
  """Raises ConfigError if `model_bytes` exceeds `have` bytes of device memory, naming the
  sizing flag furthest above its default (--model itself where none is above it)."""
  need = model_bytes(cfg, row_shape, num_classes)
  if need is None or not have or need <= have:
    return
  names = [n for n in _MODEL_FLAGS.get(cfg.model, _ANY_MODEL_FLAGS)
           if n != 'feature_dim' or cfg.dataset == 'synthetic']
  defaults = RunConfig()

  def above_default(name):
    return _largest(getattr(cfg, name)) / max(_largest(getattr(defaults, name)), 1)
  flag = max(names, key=above_default)
  if above_default(flag) <= 1:
    flag = 'model'
  value = getattr(cfg, flag)
  shown = ','.join(map(str, value)) if isinstance(value, tuple) else value
  params = model_param_count(cfg, row_shape, num_classes)
  raise ConfigError(flag, f'{shown} makes the model ({params:,} parameters) need at least '
                    f'{_gib(need)} GiB to train, more than the {_gib(have)} GiB of memory of '
                    'a device here')


def flag_row_shape(cfg: RunConfig) -> tuple | None:
  """The row shape the flags give before any data is read: [D] of synthetic data,
  [S, S, ch] of image sources; None for a latent CSV (its width is in the file)."""
  if cfg.dataset == 'synthetic':
    return (cfg.feature_dim,)
  if cfg.dataset == 'latent_csv':
    return None
  return (cfg.image_size, cfg.image_size, _channels(cfg))


def check_before_loading(cfg: RunConfig) -> None:
  """Before the data is read: the decoded images against the host's memory
  (`check_decoded_images`), then `check_model` on the row shape of `flag_row_shape` and
  the fewest classes the data can have (a lower bound) against `device_memory_bytes`."""
  check_decoded_images(cfg, host_memory_bytes())
  shape = flag_row_shape(cfg)
  if shape is not None:
    classes = cfg.num_classes if cfg.dataset == 'synthetic' else max(len(cfg.classes), 2)
    check_model(cfg, shape, classes, device_memory_bytes())


def host_memory_bytes() -> int:
  """This machine's physical memory (0 where it cannot be read)."""
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError):
    return 0


def device_memory_bytes() -> int:
  """A device's memory: its `bytes_limit` on an accelerator, the host's memory on a CPU."""
  import jax
  device = jax.local_devices()[0]
  stats = (device.memory_stats() or {}) if device.platform != 'cpu' else {}
  if 'bytes_limit' in stats:
    return int(stats['bytes_limit'])
  return host_memory_bytes()


def _gib(n: int) -> str:
  return f'{n / 2 ** 30:.3g}'
