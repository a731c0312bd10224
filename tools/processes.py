"""Stopping a child process the way systemd does: SIGTERM, then SIGKILL if
it has not exited within the timeout."""

from __future__ import annotations

import signal
import subprocess


def stop_gracefully(process: subprocess.Popen, timeout: float) -> int | None:
    """SIGTERM ``process`` (if running), wait up to ``timeout`` seconds, kill
    it if it is still there; returns its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
