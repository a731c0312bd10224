"""The test harness shared by every suite (gateway, tools, HIL) and the
benchmarks -- never imported by the product:

* ``broker``: a real Mosquitto on a free loopback port, fixtures, PKI and a
  collecting subscriber;
* ``nodes``: frames built exactly as a node builds them, ACKs checked as a
  node checks them, key and config files on disk;
* ``measurements``: a real Outbox filled with given measurements, for tests
  of sinks that do not need the whole gateway.

The repository root is on ``sys.path`` for tests (``pythonpath`` in
pyproject.toml), so suites import ``hil_tests.harness.broker`` and so on.
"""
