"""train.build's builders: the layout, the data, the resampler and one builder per model."""
import numpy as np

from fedar_jax import config
from fedar_jax import fedar_round
from fedar_jax import train
from fedar_jax.config import RunConfig

SMALL = RunConfig(num_clients=5, samples_per_client=40, feature_dim=6, num_classes=3,
                  test_per_class=10, local_epochs=1, hidden=(4,))


def test_every_model_flag_has_a_builder():
  assert all(callable(train.model_builder(name)) for name in config.MODELS)


def test_layout_is_the_specs_scale_fields():
  cfg = SMALL.replace(clients_per_round=3, client_block=2)
  rows = train.build_layout(cfg, None)
  assert rows.layout == fedar_round.ClientLayout(5, 3, 2, None)
  assert (rows.rows, rows.start, rows.stop) == (5, 0, 5)
  exp = train.build(cfg)
  assert rows.layout == fedar_round.ClientLayout(*(getattr(exp.spec, f)
                                                 for f in fedar_round.ClientLayout._fields))
  assert (fedar_round.slot_layout(rows.layout, 5) == fedar_round.slot_layout(exp.spec, 5) == (2, 2))
  # Every client in blocks of 2: 3 blocks of 2 slots, one empty padding client (id 5).
  rows = train.build_layout(SMALL.replace(client_block=2), None)
  assert rows.rows == 6
  data = train.pad_and_standardize(SMALL, train.load_data(SMALL.replace(client_block=2)), rows)
  assert data.clients.x.shape[0] == 6 and not data.clients.mask[5].any()
  np.testing.assert_array_equal(data.clients.client_id, np.arange(6))


def test_model_builders_give_the_round_its_parts():
  data = train.pad_and_standardize(SMALL, train.load_data(SMALL), train.build_layout(SMALL, None))
  resampler = train.build_resampler(SMALL, data)
  assert resampler.capacity >= data.clients.x.shape[1]
  model = train.build_mlp(SMALL, data, resampler)
  assert model.client_pipeline is None
  logits = model.apply_fn(model.params, data.test.x[:2])
  assert logits.shape == (2, 3)


def test_model_init_compiles_once_per_model_configuration():
  # A sweep builds one experiment per point: they must share one compiled init.
  data = train.pad_and_standardize(SMALL, train.load_data(SMALL), train.build_layout(SMALL, None))
  resampler = train.build_resampler(SMALL, data)
  before = train.init_params._cache_size()
  first = train.build_mlp(SMALL.replace(seed=1), data, resampler)
  second = train.build_mlp(SMALL.replace(seed=2), data, resampler)
  assert train.init_params._cache_size() - before <= 1
  assert not np.array_equal(first.params['params']['Dense_0']['kernel'],
                            second.params['params']['Dense_0']['kernel'])
