"""SMOTETomek and SMOTEENN: SMOTE, then cleaning identical to imbalanced-learn's on the same rows."""
import numpy as np
import pytest
from imblearn import combine as icombine
from imblearn import under_sampling as ius

from tests import resample_data as rd

CASES = {
    'smote_tomek': (lambda: ius.TomekLinks(sampling_strategy='all'), icombine.SMOTETomek),
    'smote_enn': (lambda: ius.EditedNearestNeighbours(sampling_strategy='all'),
                  icombine.SMOTEENN),
}


@pytest.mark.parametrize('name', list(CASES))
def test_cleaning_of_our_smote_rows_equals_imblearn(name):
  cleaner, combined = CASES[name]
  smoted = rd.run('smote')  # the same key gives the same SMOTE rows
  out = rd.run(name)
  for set_name in rd.NAMES:
    s, o = smoted[set_name], out[set_name]
    x_all = np.concatenate([s['x_in'], s['x_new']])
    y_all = np.concatenate([s['y_in'], s['y_new']])
    np.testing.assert_array_equal(np.concatenate([o['y_in'], o['y_new']])[:len(y_all)][
        :len(s['y_in'])], s['y_in'])
    ref = cleaner()
    ref.fit_resample(x_all, y_all)
    expected = np.zeros(len(y_all), bool)
    expected[ref.sample_indices_] = True
    n = len(s['y_in'])
    np.testing.assert_array_equal(o['keep'], expected[:n], err_msg=set_name)
    # synthetic rows kept by us are exactly the SMOTE rows imbalanced-learn keeps
    kept_new = s['x_new'][expected[n:]]
    np.testing.assert_allclose(o['x_new'], kept_new, rtol=1e-6, atol=1e-6)
    # class counts close to imbalanced-learn's own SMOTE + cleaning (random synthetic rows)
    x, y = rd.dataset(set_name)
    _, y_ref = combined(random_state=0).fit_resample(x, y)
    ours = rd.counts(np.concatenate([o['y_in'][o['keep']], o['y_new']]))
    theirs = rd.counts(y_ref)
    # tolerance: 20% of the balanced class size (the synthetic rows are random draws)
    assert np.all(np.abs(ours - theirs) <= 0.2 * rd.counts(y).max()), (set_name, ours, theirs)
