"""One pymodbus client per bus, and the translation of its failures.

A *link* is what devices on one bus share: a TCP connection to one
host:port, or one serial port (RTU).  ``read`` sends one request and returns
the registers, or raises ``ReadFailed`` with a short reason that becomes the
readings' quality reason and a metric label:

* ``timeout`` — nothing came back in time;
* ``bad-frame`` — bytes came back but no valid frame (CRC or framing error,
  wrong unit or transaction id);
* ``disconnected`` — the connection is down or could not be made;
* ``exception-N`` — the instrument answered with Modbus exception code N.

Errors from pymodbus are translated here, at the boundary, so the poller
never sees a pymodbus exception.
"""

from __future__ import annotations

import asyncio
import logging
import termios

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from .config import DeviceSpec

log = logging.getLogger(__name__)

# Requests that are worth repeating; an exception response is the
# instrument's considered answer (except "busy", code 6).
RETRYABLE = frozenset({"timeout", "bad-frame", "exception-6"})


class ReadFailed(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Link:
    """A pymodbus client shared by the devices of one bus."""

    def __init__(self, device: DeviceSpec, timeout: float) -> None:
        self.name = device.bus
        self.serial = device.transport == "rtu"
        self._rx_bytes = 0  # bytes received since the last request went out
        # Our own timeouts, retries and reconnects: pymodbus' are disabled
        # so that a dead device costs exactly what its config says.
        common = dict(timeout=timeout, retries=0, reconnect_delay=0, trace_packet=self._trace)
        if self.serial:
            self.client = AsyncModbusSerialClient(
                device.serial_port, framer=FramerType.RTU, baudrate=device.baudrate,
                parity=device.parity, stopbits=device.stopbits, bytesize=device.bytesize, **common,
            )
        else:
            self.client = AsyncModbusTcpClient(device.host, port=device.port, **common)
        # RTU: one request on the wire at a time, across every device of the
        # bus.  TCP: pymodbus serialises a connection's requests itself.
        self.bus_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._rx_bytes = 0
        else:
            self._rx_bytes += len(data)
        return data

    async def _ensure_connected(self) -> None:
        if self.client.connected:
            return
        async with self._connect_lock:
            if self.client.connected:
                return
            try:
                ok = await self.client.connect()
            except (OSError, termios.error, ModbusException) as exc:  # e.g. a missing serial port
                raise ReadFailed("disconnected", str(exc)) from None
            if not ok:
                raise ReadFailed("disconnected", f"cannot connect to {self.name}")

    async def read(self, unit: int, table: str, address: int, count: int, timeout: float) -> list[int]:
        await self._ensure_connected()
        if self.serial:
            async with self.bus_lock:
                return await self._read(unit, table, address, count, timeout)
        return await self._read(unit, table, address, count, timeout)

    async def _read(self, unit: int, table: str, address: int, count: int, timeout: float) -> list[int]:
        call = self.client.read_holding_registers if table == "holding" else self.client.read_input_registers
        try:
            async with asyncio.timeout(timeout):
                response = await call(address, count=count, device_id=unit)
        except TimeoutError:
            if not self.client.connected:
                raise ReadFailed("disconnected", f"{self.name} closed the connection") from None
            garbled = self._rx_bytes > 0
            if self.serial:
                # RTU answers carry no transaction id: a late answer arriving
                # after the next request went out would be taken as that
                # request's answer (a stale value stamped as fresh).  Keep
                # the bus quiet for one more timeout (the caller holds the
                # bus lock) so a late answer lands while nothing is asked
                # and is dropped.
                await asyncio.sleep(timeout)
            else:
                # A late answer would arrive with a stale transaction id and
                # poison the next request: start afresh.
                self.client.close()
            raise ReadFailed("bad-frame" if garbled else "timeout") from None
        except ConnectionException as exc:
            raise ReadFailed("disconnected", str(exc)) from None
        except ModbusException as exc:
            if not self.serial:
                self.client.close()
            raise ReadFailed("bad-frame", str(exc)) from None
        except OSError as exc:
            self.client.close()
            raise ReadFailed("disconnected", str(exc)) from None
        if response.isError():
            raise ReadFailed(f"exception-{getattr(response, 'exception_code', 0)}")
        registers = list(response.registers)
        if len(registers) != count:
            raise ReadFailed("bad-frame", f"asked for {count} registers, got {len(registers)}")
        return registers

    def close(self) -> None:
        self.client.close()
