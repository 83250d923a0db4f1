"""Shared pieces of the connection-limit tests: raw connections opened from a chosen
loopback address, HTTP/1.1 read byte by byte, the node's own counters, and ``idnode
serve`` started under a low open-files limit.

Linux answers on all of 127.0.0.0/8, so a client bound to 127.0.0.2 is a second
source next to 127.0.0.1 (the nodes under test exempt no network from per-source
limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from node.app import Node
from tests.node.process_support import IDNODE, REPO, NodeProcess, idnode_env

POLITE = "127.0.0.1"
HOG = "127.0.0.2"
REPLY_TIMEOUT_S = 10.0
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(port: int, *, source: str = POLITE, host: str = "127.0.0.1") -> Conn:
    return await asyncio.open_connection(host, port, local_addr=(source, 0))


async def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()
    for _, writer in conns:
        with contextlib.suppress(ConnectionError, OSError):  # the node closed it first
            await writer.wait_closed()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_response(
    reader: asyncio.StreamReader, timeout_s: float = REPLY_TIMEOUT_S
) -> Response | None:
    """One HTTP/1.1 response (Content-Length framed), or None when the connection ends
    (closed or reset) before a whole one arrived."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), timeout_s)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return Response(int(status_line.split(" ", 2)[1]), headers, body)


async def ended(reader: asyncio.StreamReader, timeout_s: float = REPLY_TIMEOUT_S) -> bytes:
    """Everything the node sends until it closes the connection (raises TimeoutError if
    it does not within ``timeout_s``)."""

    async def drain() -> bytes:
        got = b""
        try:
            while chunk := await reader.read(65536):
                got += chunk
        except ConnectionError:
            pass
        return got

    return await asyncio.wait_for(drain(), timeout_s)


def get_request(path: str, *, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: idnode.test\r\n{extra}\r\n".encode()


def counted(node: Node, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


def refused(node: Node, front: str, reason: str) -> float:
    return counted(node, "idnode_connections_refused_total", front=front, reason=reason)


def timed_out(node: Node, front: str, reason: str) -> float:
    return counted(node, "idnode_connections_timed_out_total", front=front, reason=reason)


# --- a node process with few file descriptors --------------------------------------


def http_get(port: int, path: str, timeout_s: float = REPLY_TIMEOUT_S) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """A sample's value in Prometheus text ``text`` (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m and m[1] == name and ",".join(sorted((m[2] or "").split(","))).strip(",") == wanted:
            return float(m[3])
    return 0.0


@dataclass
class LimitedNodeProcess(NodeProcess):
    """``idnode serve`` whose open-files limit (soft and hard) is ``nofile``."""

    nofile: int = 256
    http_port: int = 0

    def start(self, timeout: float = 60) -> LimitedNodeProcess:
        nofile = self.nofile

        def lower_limit() -> None:  # in the child, before exec
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [*IDNODE, "serve", *self.args],
            env=idnode_env(self.env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lower_limit,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self._ready.wait(timeout)
        if not self.ready:
            raise AssertionError("node did not become ready:\n" + self.output)
        m = re.search(r" http=(\d+) ", self.output)
        assert m is not None, self.output
        self.http_port = int(m[1])
        return self
