"""Calibration records and thermocouple life: traceable measurements.

* ``records.py`` -- the values: calibration records, system accuracy tests,
  sensor lives; what people type and the one-line errors;
* ``schedule.py`` -- which record is in force when, and a sensor's status;
* ``life.py`` -- a thermocouple life's counts and the default limits per type;
* ``store.py`` -- their tables in the outbox database;
* ``book.py`` -- the running gateway's side (kernels, refresh, metrics);
* ``export.py`` -- CSV and JSON for audits, and back;
* ``cli.py`` -- ``smemet calibration ...``.

The processing steps are ``calibration`` and ``thermocouple_life``
(chains.py; kernels in kernels/pure.py and _kernels.pyx);
docs/processing.md explains them to the measurement engineer.
"""
