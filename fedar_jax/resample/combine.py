"""Over-sampling followed by cleaning (imbalanced-learn's combine module).

SMOTETomek: SMOTE, then TomekLinks(sampling_strategy='all') removes both ends
of every Tomek link. SMOTEENN: SMOTE, then EditedNearestNeighbours
(sampling_strategy='all', 3 neighbours, kind_sel='all') edits every class.
Layout: SMOTE's (N + S rows; real rows first), cleaning clears mask bits.
Both return `(x, y, mask, fallback)`.
"""
import jax.numpy as jnp

from fedar_jax.resample import cleaning
from fedar_jax.resample import neighbors
from fedar_jax.resample import oversample


def smote_tomek(key, x, y, mask, *, num_classes: int, num_slots: int, k_neighbors: int = 5):
  """SMOTETomek (see module doc)."""
  x, y, mask, fallback = oversample.smote(key, x, y, mask, num_classes=num_classes,
                                              num_slots=num_slots, k_neighbors=k_neighbors)
  sq = neighbors.pairwise_sq_distances(x, x, mask)
  remove = cleaning.tomek_remove(sq, y, mask, jnp.ones((num_classes,), bool))
  return x, y, mask & ~remove, fallback


def smote_enn(key, x, y, mask, *, num_classes: int, num_slots: int, k_neighbors: int = 5,
              n_neighbors: int = 3):
  """SMOTEENN (see module doc)."""
  x, y, mask, fallback = oversample.smote(key, x, y, mask, num_classes=num_classes,
                                              num_slots=num_slots, k_neighbors=k_neighbors)
  sq = neighbors.pairwise_sq_distances(x, x, mask)
  keep, short = cleaning.enn_keep(sq, y, mask, jnp.ones((num_classes,), bool), n_neighbors,
                                  num_classes)
  return x, y, keep, fallback | short
