"""Boards: pin and bus definitions, and the small HAL drivers get their buses
from.  ``load(config)`` returns the board named in config.json."""


def load(config):
    name = config.get("board", "sim")
    module = __import__("boards." + name, None, None, ("Board",))
    return module.Board(config)
