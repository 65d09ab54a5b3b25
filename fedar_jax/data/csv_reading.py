"""CSV files read as written: UTF-8 without a leading byte-order mark, each column named once."""
from fedar_jax.data.errors import DataError


def open_csv(path: str):
  """`path` opened for the csv module: UTF-8, a byte-order mark (as Excel writes) dropped."""
  return open(path, newline='', encoding='utf-8-sig')


def unique_columns(header: list[str], path: str) -> list[str]:
  """The header's column names, stripped of surrounding spaces.

  Raises:
    DataError naming `path` when a non-empty name appears twice (which column
    a reader would take is then a guess).
  """
  names = [h.strip() for h in header]
  first = {}
  for i, name in enumerate(names):
    if name and name in first:
      raise DataError(path, f'column {name!r} appears twice in the header (columns '
                      f'{first[name] + 1} and {i + 1})')
    first.setdefault(name, i)
  return names
