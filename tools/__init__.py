"""SME-MET Edge: the ``smemet`` package (its own code is the command line)."""

__version__ = "0.1.0"
