"""The benchmark's MQTT subscriber: Mosquitto's own ``mosquitto_sub`` (C, so
it does not take the CPU the gateway is measured on), stamping each message
on receipt (``%U``, Unix time with nanoseconds) into a file read afterwards.

Each data message is one frame (the senml route publishes a frame as one
message); the retained status message is told apart by its payload (an
object, not an array of records).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import time

import orjson


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    received: float  # Unix time, seconds
    node: str
    first_time: float  # earliest reading time in the message
    measurements: int


class Subscriber:
    def __init__(self, port: int, topic: str, path: str) -> None:
        if shutil.which("mosquitto_sub") is None:
            raise RuntimeError("mosquitto_sub is missing: apt-get install mosquitto-clients")
        self.path = path
        self._file = open(path, "wb")
        command = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic,
                   "-i", f"bench-sub-{os.getpid()}", "-F", "%U %t %p"]
        prefix = topic.rsplit("/", 1)[0]
        for control in ("checkpoint", "gateway-key"):  # the route's signed checkpoints and key: binary payloads
            command += ["-T", f"{prefix}/{control}"]  # would break the one-line-per-message file
        if shutil.which("stdbuf"):
            command = ["stdbuf", "-oL"] + command  # line by line, so counting while it runs sees every message
        self._process = subprocess.Popen(command, stdout=self._file, stderr=subprocess.DEVNULL)
        self._reader = open(path, "rb")
        self._partial = b""
        self.messages = 0  # data messages seen so far by count()
        self.last_line = b""

    def count(self) -> int:
        """Data messages received so far (reads what was written since last time)."""
        chunk = self._partial + self._reader.read()
        lines = chunk.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if b" [" in line[:200]:
                self.messages += 1
                self.last_line = line
        return self.messages

    def wait_for(self, messages: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= messages:
                return True
            time.sleep(0.02)
        return False

    def wait_quiet(self, seconds: float, timeout: float) -> None:
        """Until no message has arrived for ``seconds`` (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        seen, since = self.count(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < seconds:
            time.sleep(0.05)
            if self.count() != seen:
                seen, since = self.messages, time.monotonic()

    @property
    def last_arrival(self) -> float:
        return float(self.last_line.split(b" ", 1)[0]) if self.last_line else 0.0

    def close(self) -> list[Message]:
        """Stop, and every data message received, in order."""
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._file.close()
        self._reader.close()
        messages = []
        with open(self.path, "rb") as f:
            for line in f:
                stamp, topic, payload = line.rstrip(b"\n").split(b" ", 2)
                if not payload.startswith(b"["):
                    continue  # the retained status message
                records = orjson.loads(payload)
                messages.append(Message(float(stamp), topic.rsplit(b"/", 1)[1].decode(),
                                        min(r["t"] for r in records), len(records)))
        return messages
