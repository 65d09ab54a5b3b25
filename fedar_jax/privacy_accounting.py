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
import functools
import math

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


def _accountant(name: str, relation):
  if name == 'rdp':
    from dp_accounting import rdp
    return rdp.RdpAccountant(neighboring_relation=relation)
  from dp_accounting import pld
  return pld.PLDAccountant(neighboring_relation=relation)


@functools.lru_cache(maxsize=256)
def cumulative_epsilons(accountant: str, client_sampling: str, num_clients: int,
                        per_round: int, noise_multiplier: float, rounds: int,
                        delta: float) -> tuple[float, ...]:
  """(epsilon after round 1, ..., after round `rounds`) at `delta`."""
  if noise_multiplier <= 0:
    return (math.inf,) * rounds
  event, relation = round_event(client_sampling, num_clients, per_round, noise_multiplier)
  acc = _accountant(accountant, relation)
  out = []
  for _ in range(rounds):
    acc.compose(event)
    out.append(float(acc.get_epsilon(delta)))
  return tuple(out)


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
