"""Confusion matrix and the macro metrics of imbalanced-learn / scikit-learn, in jnp.

Definitions (K classes; tp, fp, fn, tn per class from the confusion matrix):
  sensitivity = tp / (tp + fn)   (per-class recall)
  specificity = tn / (tn + fp)
  precision   = tp / (tp + fp)
  f1          = 2 tp / (2 tp + fp + fn)
A zero denominator gives 0 (scikit-learn's zero_division default). Macro means
run over the labels present in the truth or the predictions, like
scikit-learn's and imbalanced-learn's default `labels=None`.
  gmean            = sqrt(macro sensitivity * macro specificity)
                     (imblearn `geometric_mean_score(average='macro')`, the paper's GMN)
  gmean_multiclass = (prod of per-class sensitivities) ** (1 / #present labels)
                     (imblearn's default `average='multiclass'`)

Per-client evaluation (`evaluate_clients`, --eval_clients) scores the global model on
each client's own real rows: the client's G-mean is `gmean` above on its confusion
matrix (so a class the client lacks counts only where the model predicts it, with
sensitivity 0, as imblearn's `geometric_mean_score(average='macro')`), and its
minority recall is the recall of its rarest class present (fewest real rows; ties go
to the lowest class index).
"""
import jax
import jax.numpy as jnp

from fedar_jax import data_dtype

METRIC_NAMES = ('accuracy', 'sensitivity', 'specificity', 'precision', 'f1', 'gmean',
                'gmean_multiclass')


def confusion_matrix(y_true: jax.Array, y_pred: jax.Array, mask: jax.Array,
                     num_classes: int) -> jax.Array:
  """int32[K, K]; rows are true classes, columns predictions; masked rows ignored.

  y_true, y_pred: int32[T]; mask: bool[T].
  """
  t = jax.nn.one_hot(y_true, num_classes, dtype=jnp.float32) * mask[:, None]
  p = jax.nn.one_hot(y_pred, num_classes, dtype=jnp.float32)
  return jnp.round(t.T @ p).astype(jnp.int32)


def _div(a, b):
  return jnp.where(b > 0, a / jnp.where(b > 0, b, 1), 0.0)


def from_confusion(cm: jax.Array) -> dict:
  """All metrics from a confusion matrix int[K, K].

  Returns a dict of float32 scalars named METRIC_NAMES plus `recall` float32[K]
  (per-class sensitivity, 0 for a class absent from the truth).
  """
  cm = cm.astype(jnp.float32)
  tp = jnp.diag(cm)
  support = jnp.sum(cm, axis=1)
  predicted = jnp.sum(cm, axis=0)
  total = jnp.sum(cm)
  fn = support - tp
  fp = predicted - tp
  tn = total - tp - fn - fp
  present = (support > 0) | (predicted > 0)
  n_present = jnp.maximum(jnp.sum(present), 1)

  def macro(v):
    return jnp.sum(jnp.where(present, v, 0.0)) / n_present

  sens = _div(tp, support)
  spec = _div(tn, tn + fp)
  log_sens = jnp.where(present, jnp.log(jnp.where(sens > 0, sens, 1.0)), 0.0)
  any_zero = jnp.any(present & (sens == 0))
  gmean_mc = jnp.where(any_zero | (jnp.sum(present) == 0), 0.0,
                       jnp.exp(jnp.sum(log_sens) / n_present))
  return {
      'accuracy': _div(jnp.sum(tp), total),
      'sensitivity': macro(sens),
      'specificity': macro(spec),
      'precision': macro(_div(tp, predicted)),
      'f1': macro(_div(2 * tp, 2 * tp + fp + fn)),
      'gmean': jnp.sqrt(macro(sens) * macro(spec)),
      'gmean_multiclass': gmean_mc,
      'recall': sens,
  }


def evaluate(apply_fn, params, x: jax.Array, y: jax.Array, mask: jax.Array,
             num_classes: int) -> dict:
  """Metrics of the model on a (balanced) test set.

  x: float[T, ...]; y: int32[T]; mask: bool[T]. Returns `from_confusion`'s dict
  plus `confusion` int32[K, K].
  """
  pred = jnp.argmax(apply_fn(params, x), axis=-1)
  cm = confusion_matrix(y, pred, mask, num_classes)
  return {**from_confusion(cm), 'confusion': cm}


CLIENT_METRIC_NAMES = ('client_gmean', 'client_minority_recall')


def client_scores(cm: jax.Array) -> dict:
  """One client's scores from its confusion matrix int[K, K]: float32 scalars named
  CLIENT_METRIC_NAMES (G-mean; recall of the rarest class in the client's truth)."""
  support = jnp.sum(cm, axis=1)
  rarest = jnp.argmin(jnp.where(support > 0, support, jnp.iinfo(jnp.int32).max))
  scores = from_confusion(cm)
  return {'client_gmean': scores['gmean'], 'client_minority_recall': scores['recall'][rarest]}


def evaluate_clients(apply_fn, params, x: jax.Array, y: jax.Array, mask: jax.Array,
                     num_classes: int) -> dict:
  """The model's `client_scores` on each of E clients' own rows (vmap over clients).

  x: float32 or bfloat16[E, N, ...] (cast to float32); y: int32[E, N]; mask: bool[E, N]
  (real rows). Returns {name: float32[E]} for CLIENT_METRIC_NAMES.
  """
  def one(xc, yc, mc):
    pred = jnp.argmax(apply_fn(params, data_dtype.computed(xc)), axis=-1)
    return client_scores(confusion_matrix(yc, pred, mc, num_classes))
  return jax.vmap(one)(x, y, mask)
