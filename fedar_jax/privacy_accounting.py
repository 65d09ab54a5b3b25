"""The epsilon a DP run has spent after each round, from Google's dp_accounting (host side).

One round of DP-FedAvg (privacy.py) releases a Gaussian mechanism on a sampled cohort;
`round_event` names the dp_accounting event of each --client_sampling mode:

  every client each round (no sampling)  GaussianDpEvent(z), add-or-remove-one neighbours;
  --client_sampling=poisson              PoissonSampledDpEvent(q, GaussianDpEvent(z)),
                                         add-or-remove-one neighbours (RDP or PLD);
  --client_sampling=uniform              SampledWithoutReplacementDpEvent(C, m,
                                         GaussianDpEvent(z / 2)), replace-one neighbours
                                         (RDP only: replacing a client moves the clipped sum
                                         by up to 2 * clip, so the multiplier halves).

z is the effective noise multiplier (`privacy.effective_noise_multiplier`: sigma for
--dp=fixed, Andrew et al.'s composition with the clipped-count noise for --dp=adaptive).
The cumulative epsilon at --dp_delta after rounds 1..R is computed once per distinct
(accountant, sampling, C, m, z, R, delta) (`cumulative_epsilons`, cached), not per sweep
point. No noise (z = 0) or --dp=none: epsilon is inf (no guarantee).
"""
import contextlib
import functools
import math

from absl import logging as absl_logging

from fedar_jax import sampling

ACCOUNTANTS = ('rdp', 'pld')


def round_event(client_sampling: str, num_clients: int, per_round: int,
                noise_multiplier: float):
  """The dp_accounting event of one round (see the module docstring) and the neighbouring
  relation it is accounted under."""
  import dp_accounting
  from dp_accounting import privacy_accountant
  relation = privacy_accountant.NeighboringRelation
  gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
  if per_round >= num_clients:
    return gaussian, relation.ADD_OR_REMOVE_ONE
  if client_sampling == 'poisson':
    return (dp_accounting.PoissonSampledDpEvent(per_round / num_clients, gaussian),
            relation.ADD_OR_REMOVE_ONE)
  return (dp_accounting.SampledWithoutReplacementDpEvent(
      num_clients, per_round, dp_accounting.GaussianDpEvent(noise_multiplier / 2)),
          relation.REPLACE_ONE)


@contextlib.contextmanager
def _quiet_accountant():
  """dp_accounting's RDP logs a warning per Renyi order whose series does not converge
  (that order is left out of the minimum, which stays a valid bound): kept off stderr."""
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    yield
  finally:
    absl_logging.set_verbosity(verbosity)


def _rdp_epsilons(event, relation, rounds: int, delta: float) -> list[float]:
  """RDP composes additively: one round's RDP curve, computed once, times t for round t."""
  from dp_accounting import rdp
  acc = rdp.RdpAccountant(neighboring_relation=relation)
  acc.compose(event)
  orders, per_round = acc._orders, acc._rdp  # pylint: disable=protected-access
  return [float(rdp.compute_epsilon(orders, per_round * t, delta)[0])
          for t in range(1, rounds + 1)]


def _pld_epsilons(event, relation, rounds: int, delta: float) -> list[float]:
  """One round's privacy loss distribution, built once, self-composed t times for round t
  (an FFT each: about a second per round on a 2-core CPU; rdp is much faster)."""
  from dp_accounting import pld
  acc = pld.PLDAccountant(neighboring_relation=relation)
  acc.compose(event)
  per_round = acc._pld  # pylint: disable=protected-access
  return [float(per_round.self_compose(t).get_epsilon_for_delta(delta))
          for t in range(1, rounds + 1)]


@functools.lru_cache(maxsize=256)
def cumulative_epsilons(accountant: str, client_sampling: str, num_clients: int,
                        per_round: int, noise_multiplier: float, rounds: int,
                        delta: float) -> tuple[float, ...]:
  """(epsilon after round 1, ..., after round `rounds`) at `delta`."""
  if noise_multiplier <= 0:
    return (math.inf,) * rounds
  event, relation = round_event(client_sampling, num_clients, per_round, noise_multiplier)
  # One round's curve (RDP) or distribution (PLD) is computed once and scaled or
  # self-composed per round: composing round after round would cost a computation each.
  with _quiet_accountant():
    if accountant == 'rdp':
      return tuple(_rdp_epsilons(event, relation, rounds, delta))
    return tuple(_pld_epsilons(event, relation, rounds, delta))


def per_round_clients(cfg) -> int:
  """m: the clients a round of `cfg` samples (the expected number with Poisson sampling)."""
  return sampling.clients_per_round(cfg.num_clients, cfg.clients_per_round,
                                    cfg.client_fraction)


def run_epsilons(cfg) -> tuple[float, ...]:
  """The cumulative epsilon of a RunConfig after each of its rounds (inf with --dp=none)."""
  if cfg.dp == 'none':
    return (math.inf,) * cfg.rounds
  from fedar_jax import privacy
  z = privacy.effective_noise_multiplier(
      cfg.dp_noise_multiplier, cfg.dp_clip_count_stddev if cfg.dp == 'adaptive' else None)
  return cumulative_epsilons(cfg.dp_accountant, cfg.client_sampling, cfg.num_clients,
                             per_round_clients(cfg), z, cfg.rounds, cfg.dp_delta)


def epsilon_cell(epsilons, round_number: int) -> str:
  """The epsilon column's cell of round `round_number` (1-based): '%.6f', or 'inf'."""
  value = epsilons[round_number - 1] if epsilons and round_number <= len(epsilons) else math.inf
  return 'inf' if math.isinf(value) else f'{value:.6f}'
