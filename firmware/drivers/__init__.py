"""Sensor drivers, one folder each, found by the name used in config.json.

A driver declares ``NAME``, ``BUS`` ("spi", "i2c", "uart", "adc"), ``UNITS``
(SenML units it reports), ``SETTINGS`` (``(key, kind, default, limits)``
tuples checked at boot) and optionally ``validate(channel, where,
problems)`` -- in ``schema.py`` beside it (loaded only while config.json is
validated, then unloaded: the running node's heap holds none of it), or, for
a driver without one, in its module.  Its ``Driver(board, channel)`` has
``setup()`` and ``async read(emit)``, calling ``emit(name, unit, value,
reason)`` per record (``value`` None with a reason: fault; a value with a
reason: uncertain).  ``sim.py`` beside it simulates the chip at register
level for the sim board.  See docs/driver-author.md.
"""
