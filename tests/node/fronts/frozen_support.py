"""A PostgreSQL that hangs rather than dies, and a client timing every answer of a node.

Two ways to freeze the registry, alike for the node: the fault-injecting proxy's
``freeze`` mode (tests/pgproxy_support.py), and SIGSTOP of a private server's postmaster
with every process it started (a server stopped by an operator, a hypervisor pausing
its machine). Either way connections are accepted and nothing is answered until the
thaw, when what was sent meanwhile is read and answered.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from node.client.native import NativeClient
from registry.embedded import EmbeddedPostgres
from tests.pgproxy_support import PgProxy


class ProxyFreezer:
    def __init__(self, proxy: PgProxy):
        self.proxy = proxy

    def freeze(self) -> None:
        self.proxy.freeze()

    def thaw(self) -> None:
        self.proxy.thaw()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # ended while we looked
        if int(fields[1]) == pid:  # the field after the state: the parent's pid
            found.append(int(stat.parent.name))
    return found


class SigstopFreezer:
    """SIGSTOP to the postmaster and its processes (backends, checkpointer, ...); SIGCONT
    to the same ones at the thaw (a stopped postmaster starts no new ones)."""

    def __init__(self, pg: EmbeddedPostgres):
        self.pg = pg
        self.stopped: list[int] = []

    def freeze(self) -> None:
        postmaster = self.pg.postmaster_pid()
        assert postmaster is not None, "the private server is not running"
        os.kill(postmaster, signal.SIGSTOP)  # first: it starts no process after this
        self.stopped = [postmaster]
        for pid in _children(postmaster):
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            self.stopped.append(pid)

    def thaw(self) -> None:
        for pid in reversed(self.stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.stopped = []


@dataclass(frozen=True)
class Answer:
    front: str  # "udp" or "http"
    handle: str
    code: int  # the Handle response code (RC)
    status: int  # the HTTP status (0 over UDP)
    waited_s: float


class Timed:
    """Asks a node over native UDP (one datagram, no retry, no TCP fallback) and over
    HTTP, and records how long each answer took, wall clock."""

    def __init__(self, handle_port: int, http_port: int, session: aiohttp.ClientSession):
        self.native = NativeClient(
            "127.0.0.1", handle_port, timeout_s=20, udp_timeouts_s=(20,), udp=True
        )
        self.base = f"http://127.0.0.1:{http_port}/api/handles/"
        self.session = session
        self.answers: list[Answer] = []

    async def udp(self, handle: str) -> Answer:
        started = time.monotonic()
        reply = await self.native.resolve(handle)
        return self._keep(
            Answer("udp", handle, int(reply.header.response_code), 0, time.monotonic() - started)
        )

    async def http(self, handle: str) -> Answer:
        started = time.monotonic()
        async with self.session.get(self.base + handle) as resp:
            body = await resp.json()
            waited = time.monotonic() - started
        return self._keep(Answer("http", handle, int(body["responseCode"]), resp.status, waited))

    def _keep(self, answer: Answer) -> Answer:
        self.answers.append(answer)
        return answer
