"""The one error a data source raises for bad input."""


class DataError(ValueError):
  """Bad input data; str() is one line naming the file or flag and what was found.

  where: the file path or `--flag` at fault.
  """

  def __init__(self, where: str, message: str):
    super().__init__(f'{where}: {message}')
    self.where = where
