"""One worker process of ``idnode serve --workers N`` (``python -m node.serving.worker``): read
its order from the supervisor (node.serving.supervisor) on stdin, run a ``Node`` with those
settings, report ready or the error on stdout, stop on SIGTERM or when stdin closes.
The pipe protocol is described in node.serving.supervisor."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import orjson

from node.app import Node, serve
from node.errors import USER_ERRORS, exit_status
from node.runtime.logs import setup_logging
from node.runtime.loop import install_fast_loop
from node.settings import Settings, SettingsError, load_settings

log = logging.getLogger("idnode.workers")


class _WorkerLog(logging.Filter):
    """Tags a worker's records with its index. The node's own "ready:" line becomes
    "worker i up:": the supervisor announces the node ready once every worker is, and
    whoever watches the log for that line must see it once, from the supervisor."""

    def __init__(self, index: int, text: bool):
        super().__init__()
        self.index = index
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name == "idnode.node"
            and isinstance(record.msg, str)
            and " ready: " in record.msg
        ):
            record.msg = record.msg.replace(" ready: ", f" worker {self.index} up: ", 1)
        record.worker = self.index  # a field of its own in JSON logs
        if self.text:
            record.name = f"{record.name}/w{self.index}"
        return True


class _Report:
    """The worker's one report line to the supervisor (stdout, see the module docstring)."""

    def __init__(self, fd: int):
        self.fd: int | None = fd

    def send(self, obj: dict[str, Any]) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.write(fd, orjson.dumps(obj) + b"\n")
        except OSError:
            pass  # the supervisor is gone; stdin's end stops us
        finally:
            os.close(fd)


def _read_order(fd: int) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    order = orjson.loads(data)
    if not isinstance(order, dict):
        raise TypeError("the order is not a JSON object")
    return order


async def _serve_worker(settings: Settings, report: _Report, index: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def supervisor_gone() -> None:
        if not os.read(0, 4096):
            loop.remove_reader(0)
            log.warning("the supervisor is gone; stopping")
            stop.set()

    def ready(node: Node) -> None:
        node.metrics.worker = str(index)  # the worker label of its process metrics
        report.send(
            {
                "ready": {
                    "admin": node.admin_port,
                    "handle": node.handle_port,
                    "http": node.http_port,
                }
            }
        )
        loop.add_reader(0, supervisor_gone)

    await serve(settings, stop=stop, on_ready=ready)


def worker_main() -> int:
    """One worker process: read its order, serve until told to stop."""
    report = _Report(os.dup(1))
    os.dup2(2, 1)  # stray prints land in the log, never in the report pipe
    index = -1
    try:
        order = _read_order(0)
        index = int(order["index"])
        settings = load_settings(env={}, flags=order["settings"])
    except (SettingsError, ValueError, KeyError, TypeError) as exc:
        message = f"bad worker order: {exc}"
        report.send({"error": message})
        sys.stderr.write(f"idnode: error: worker {index}: {message}\n")
        return 2
    setup_logging(settings.log_format, settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerLog(index, settings.log_format == "text"))
    install_fast_loop()
    try:
        asyncio.run(_serve_worker(settings, report, index))
    except KeyboardInterrupt:
        return 130
    except USER_ERRORS as exc:  # reported as one line, as ``idnode`` does (node.cli.entry)
        report.send({"error": str(exc)})
        sys.stderr.write(f"idnode: error: worker {index}: {exc}\n")
        return exit_status(exc)
    except BaseException as exc:
        report.send({"error": f"{type(exc).__name__}: {exc}"})
        raise
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
