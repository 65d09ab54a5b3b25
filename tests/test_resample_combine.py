"""SMOTETomek and SMOTEENN: SMOTE, then cleaning identical to imbalanced-learn's on the same rows
(kept input rows, kept synthetic rows and their labels exactly)."""
import numpy as np
import pytest
from imblearn import under_sampling as ius

from tests import resample_data as rd

CASES = {
    'smote_tomek': lambda: ius.TomekLinks(sampling_strategy='all'),
    'smote_enn': lambda: ius.EditedNearestNeighbours(sampling_strategy='all'),
}


@pytest.mark.parametrize('name', list(CASES))
def test_cleaning_of_our_smote_rows_equals_imblearn(name):
  cleaner = CASES[name]
  smoted = rd.run('smote')  # the same key gives the same SMOTE rows
  out = rd.run(name)
  removed = 0
  for set_name in rd.NAMES:
    s, o = smoted[set_name], out[set_name]
    x_all = np.concatenate([s['x_in'], s['x_new']])
    y_all = np.concatenate([s['y_in'], s['y_new']])
    ref = cleaner()
    ref.fit_resample(x_all, y_all)
    expected = np.zeros(len(y_all), bool)
    expected[ref.sample_indices_] = True
    n = len(s['y_in'])
    np.testing.assert_array_equal(o['keep'], expected[:n], err_msg=set_name)
    # synthetic rows kept by us are exactly the SMOTE rows imbalanced-learn keeps
    kept_new = s['x_new'][expected[n:]]
    np.testing.assert_array_equal(o['x_new'], kept_new)  # the same SMOTE rows, bit for bit
    np.testing.assert_array_equal(o['y_new'], s['y_new'][expected[n:]], err_msg=set_name)
    assert expected[n:].any(), set_name
    removed += int(np.sum(~expected))
  assert removed > 0  # the cleaning did act somewhere (a vacuous equality would pass)
