"""Modbus lines: the connection a device is reached through, and the queue that keeps a serial bus half-duplex.

A Modbus TCP device gets a line of its own. Devices on one RS-485 bus, a local serial port or a serial
server reached by RTU-over-TCP, share one line: one client and one lock, so exactly one request is on the
wire at a time. ``asyncio.Lock`` wakes waiters in arrival order, so the devices of a bus take turns fairly.

Retries and timeouts are ours, per device, not pymodbus': several devices with different timeouts share a
client, and after a timeout the line is closed and reopened. A late answer to a timed-out request, or a TCP
answer with someone else's transaction id, can then never be mistaken for the answer to the next request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from alumon.config import Device, RtuOverTcpTransport, RtuTransport, TcpTransport
from alumon.profiles import RegisterFunction
from edge.plan import ReadRequest

log = logging.getLogger("alumon.edge.lines")

ModbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient


class ReadFailure(Exception):
    """A read that gave nothing usable. ``kind`` is one word for counting, the message says what happened."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind  # connect | timeout | garbled | exception | short | io


class ModbusLine:
    """One connection (socket or serial port) and the lock that serialises requests on it."""

    def __init__(self, name: str, transport: TcpTransport | RtuOverTcpTransport | RtuTransport, timeout_s: float):
        self.name = name
        self.transport = transport
        self.timeout_s = timeout_s  # pymodbus' own ceiling; each device's shorter timeout is applied on top
        self.lock = asyncio.Lock()
        self.reconnects = 0
        self._rx_bytes = 0  # bytes received on the line, to tell "silent" from "answered garbage"
        self._client: ModbusClient | None = None  # made inside the event loop, which pymodbus needs

    def _make_client(self) -> ModbusClient:
        t = self.transport
        common: dict[str, Any] = {"timeout": self.timeout_s, "retries": 0, "reconnect_delay": 0,
                                  "trace_packet": self._count_rx}
        if isinstance(t, RtuTransport):
            return AsyncModbusSerialClient(t.serial_port, framer=FramerType.RTU, baudrate=t.baudrate,
                                           bytesize=t.bytesize, parity=t.parity, stopbits=t.stopbits, **common)
        framer = FramerType.RTU if isinstance(t, RtuOverTcpTransport) else FramerType.SOCKET
        return AsyncModbusTcpClient(t.host, port=t.port, framer=framer, **common)

    def _count_rx(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._rx_bytes += len(data)
        return data

    @property
    def client(self) -> ModbusClient:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def reset(self) -> None:
        """Drop the connection: whatever is half-received on it is garbage for the next request."""
        self.close()
        self.reconnects += 1

    async def _ensure_connected(self, device: Device) -> None:
        if self.client.connected:
            return
        try:
            ok = await asyncio.wait_for(self.client.connect(), timeout=device.timeout_s)
        except (TimeoutError, OSError, ModbusException) as exc:
            raise ReadFailure("connect", f"connect to {self.name} failed: {type(exc).__name__}") from exc
        if not ok or not self.client.connected:
            raise ReadFailure("connect", f"connect to {self.name} failed")
        if device.pause_after_connect_s:  # some gateways drop requests sent right after the connect
            await asyncio.sleep(device.pause_after_connect_s)

    async def read(self, req: ReadRequest, device: Device) -> list[int]:
        """Registers (or bits, as 0/1) of one request, trying 1 + ``device.retries`` times; raises ReadFailure.

        The caller holds ``lock`` for the whole device cycle on a shared line."""
        failure = ReadFailure("timeout", "no attempt")
        for _attempt in range(1 + device.retries):
            try:
                await self._ensure_connected(device)
                rx_before = self._rx_bytes
                return await asyncio.wait_for(self._read_once(req, device.unit_id), timeout=device.timeout_s)
            except ReadFailure as exc:
                failure = exc
                if exc.kind == "exception":  # the device answered: asking again gives the same answer
                    raise
            except TimeoutError:
                what = f"({req.function.value} {req.address}+{req.count})"
                if self._rx_bytes > rx_before:  # bytes came, no valid frame: bad CRC, foreign transaction id
                    failure = ReadFailure("garbled", f"garbled answer within {device.timeout_s:g} s: "
                                                     f"{self._rx_bytes - rx_before} bytes, no valid frame {what}")
                else:
                    failure = ReadFailure("timeout", f"no answer within {device.timeout_s:g} s {what}")
                self.reset()
            except (OSError, ModbusException) as exc:  # dropped connection, garbled frame pymodbus gave up on
                failure = ReadFailure("io", f"{type(exc).__name__}: {exc}"[:200])
                self.reset()
            finally:
                if device.inter_request_delay_s:
                    await asyncio.sleep(device.inter_request_delay_s)
        raise failure

    async def _read_once(self, req: ReadRequest, unit: int) -> list[int]:
        c = self.client
        fc = req.function
        if fc is RegisterFunction.HOLDING:
            rr = await c.read_holding_registers(req.address, count=req.count, device_id=unit)
        elif fc is RegisterFunction.INPUT:
            rr = await c.read_input_registers(req.address, count=req.count, device_id=unit)
        elif fc is RegisterFunction.COIL:
            rr = await c.read_coils(req.address, count=req.count, device_id=unit)
        else:
            rr = await c.read_discrete_inputs(req.address, count=req.count, device_id=unit)
        if rr.isError():
            code = getattr(rr, "exception_code", "?")
            raise ReadFailure("exception", f"exception code {code} at {fc.value} {req.address}+{req.count}")
        values = [int(b) for b in rr.bits] if fc.is_bits else list(rr.registers)
        if len(values) < req.count:
            raise ReadFailure("short", f"short response: {len(values)} of {req.count} "
                                       f"{'bits' if fc.is_bits else 'registers'}")
        return values[:req.count]  # bits arrive padded to whole bytes


def build_lines(devices: list[Device]) -> dict[str, ModbusLine]:
    """One line per serial bus (shared by its devices) and one per Modbus TCP device, keyed by device id."""
    by_device: dict[str, ModbusLine] = {}
    shared: dict[str, ModbusLine] = {}
    for dev in devices:
        if dev.shares_line:
            key = dev.transport.line
            if key not in shared:
                ceiling = max(d.timeout_s for d in devices if d.shares_line and d.transport.line == key)
                shared[key] = ModbusLine(key, dev.transport, ceiling)
            by_device[dev.id] = shared[key]
        else:
            by_device[dev.id] = ModbusLine(f"{dev.transport.line} unit {dev.unit_id}", dev.transport, dev.timeout_s)
    return by_device
