"""Data-sharing agreements: per route, who shares what with whom and on
which terms -- channels, resolution, delay, validity, pseudonyms, fields --
enforced by the gateway (``terms.py``, a stage of the delivery loop), with
every delivery stamped with the agreement's id and version.  The ``agreement``
table of a route: ``config.py``; what a partner reads of it: ``describe.py``."""

from __future__ import annotations

from .config import AGGREGATES, FIELDS, Agreement, Party, Resolution, parse_agreement
from .terms import Release, Terms

__all__ = ["AGGREGATES", "FIELDS", "Agreement", "Party", "Release", "Resolution", "Terms", "parse_agreement"]
