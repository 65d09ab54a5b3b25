import numpy as np
import pytest
import tensorflow_datasets as tfds

from fedar_jax.data import tfds_source
from fedar_jax.data.errors import DataError


def test_mock_dataset_through_data_source():
  with tfds.testing.mock_data(num_examples=12):
    reference = tfds.data_source('mnist', split='train')
    expected = np.array([int(reference[i]['label']) for i in range(12)])
    first = np.asarray(reference[0]['image'])[..., 0].astype(np.float32) / 255
    pool, ids = tfds_source.load('mnist', split='train', image_size=28)
  assert pool.x.shape == (12, 28, 28, 1)
  np.testing.assert_allclose(pool.x[0, ..., 0], first, atol=1e-6)
  np.testing.assert_array_equal(np.array(ids)[pool.y], expected)
  assert pool.class_names == tuple(str(i) for i in ids)


def test_not_prepared_is_a_data_error(tmp_path):
  with pytest.raises(DataError, match='--dataset=tfds:mnist: not available prepared') as e:
    tfds_source.load('mnist', data_dir=str(tmp_path))
  message = str(e.value)
  assert '\n' not in message and 'array_record' in message
  assert not message.rstrip().endswith(':'), message  # Not cut after "Possible root causes:".

