"""The console scripts fedar-run, fedar-sweep, fedar-report, fedar-plan and fedar-population
(pyproject.toml).

Each makes the standard streams tolerant (`std_streams.guard`) and installs the
start-up signal handler (`interrupts.exit_while_starting`) before it imports its
command, so SIGINT/SIGTERM at any moment of start-up ends the process with one
line and exit status 130/143, as `python -m` does. This module imports nothing
else at load time.
"""
from fedar_jax import interrupts
from fedar_jax import std_streams


def run() -> None:
  """fedar-run: `python -m fedar_jax.main`."""
  std_streams.guard()
  interrupts.exit_while_starting()
  from fedar_jax import main
  main.run()


def sweep() -> None:
  """fedar-sweep: `python -m fedar_jax.sweep`."""
  std_streams.guard()
  interrupts.exit_while_starting()
  from fedar_jax import sweep as sweep_lib
  sweep_lib.run()


def plan() -> None:
  """fedar-plan: `python -m fedar_jax.plan`."""
  std_streams.guard()
  interrupts.exit_while_starting()
  from fedar_jax import plan as plan_lib
  plan_lib.run()


def report() -> None:
  """fedar-report: `python -m fedar_jax.report`."""
  std_streams.guard()
  interrupts.exit_while_starting()
  from fedar_jax import report as report_lib
  report_lib.main()


def population() -> None:
  """fedar-population: `python -m fedar_jax.population`."""
  std_streams.guard()
  interrupts.exit_while_starting()
  from fedar_jax import population as population_lib
  population_lib.run()
