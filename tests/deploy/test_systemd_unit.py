"""deploy/idnode.service: the command it runs is one idnode accepts, its settings are
idnode's own, its hardening is in place, and systemd itself finds nothing to object to
(``systemd-analyze verify``, where systemd is installed)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from node.cli.entry import build_parser
from node.settings import Settings, load_settings

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "idnode.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value given (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], defaultdict(list))
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None and key.strip() == key, f"line {number}: {raw!r}"
        current[key].append(value.strip())
    return sections


SERVICE = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]


def one(key: str) -> str:
    values = SERVICE.get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in SERVICE["Environment"]:
        for item in shlex.split(line):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def test_execstart_is_a_command_idnode_parses() -> None:
    argv = shlex.split(one("ExecStart"))
    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == "idnode"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve"
    assert shlex.split(one("ExecReload"))[1:] == ["-HUP", "$MAINPID"]


def test_environment_is_valid_idnode_settings() -> None:
    idnode_env = {k: v for k, v in environment().items() if k.startswith("IDNODE_")}
    settings = load_settings(env=idnode_env)  # an unknown name or a bad value raises
    assert settings.embedded
    assert str(settings.data_dir) == "/var/lib/idnode"
    assert one("WorkingDirectory") == str(settings.data_dir)
    # The data dir is the one place the node writes, under ProtectSystem=strict.
    assert one("ReadWritePaths") == str(settings.data_dir)
    assert one("StateDirectory") == settings.data_dir.name


def test_hardening_options() -> None:
    assert one("User") == one("Group") == "idnode"
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") == "yes"
    assert one("PrivateTmp") == "yes"
    assert one("SystemCallFilter") == "@system-service"
    assert set(one("RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert one("KillMode") == "mixed"  # idnode stops its PostgreSQL itself, in order
    # MemoryDenyWriteExecute breaks PostgreSQL's JIT: off, with the reason next to it.
    assert "MemoryDenyWriteExecute" not in SERVICE
    assert "MemoryDenyWriteExecute is left off" in UNIT.read_text(encoding="utf-8")


def test_no_capability_is_needed_for_the_default_ports() -> None:
    assert one("CapabilityBoundingSet") == "" and one("AmbientCapabilities") == ""
    defaults = Settings.__dataclass_fields__
    ports = [defaults[name].default for name in ("handle_port", "http_port", "admin_port")]
    assert all(isinstance(p, int) and p >= 1024 for p in ports), ports


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (no systemd on this machine)"
)
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    """The unit as installed names /opt/idnode/bin/idnode, which verify checks exists: it
    is checked here with this checkout's idnode in that place."""
    idnode = Path(sys.executable).with_name("idnode")
    assert idnode.exists(), idnode
    text = UNIT.read_text(encoding="utf-8").replace("/opt/idnode/bin/idnode", str(idnode))
    unit = tmp_path / "idnode.service"
    unit.write_text(text, encoding="utf-8")
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 on unknown keys and bad values too; it warns on stderr.
    assert result.returncode == 0 and result.stderr == "", result.stderr
