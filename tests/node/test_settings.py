"""Settings: precedence flag > env > file > default, and validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.cli.entry import setting_flags
from node.settings import Settings, SettingsError, load_settings, settings_markdown


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "idnode.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    s = load_settings(env={})
    assert (s.handle_port, s.http_port, s.admin_port) == (2641, 8000, 9100)
    assert s.bind == "127.0.0.1" and s.role == "secondary" and s.embedded
    assert s.prefixes == ()


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    cfg = write(
        tmp_path, 'http_port = 8001\nadmin_port = 9101\nhandle_port = 2651\nrole = "enterprise"\n'
    )
    env = {"IDNODE_ADMIN_PORT": "9102", "IDNODE_HANDLE_PORT": "2652"}
    s = load_settings(config_file=cfg, env=env, flags={"handle_port": 2653, "http_port": None})
    assert s.http_port == 8001  # file over default (flag not given)
    assert s.admin_port == 9102  # env over file
    assert s.handle_port == 2653  # flag over env
    assert s.role == "enterprise"


def test_config_file_from_env(tmp_path: Path) -> None:
    cfg = write(
        tmp_path, 'prefixes = ["88.118", "88.119"]\ndatabase_url = "postgresql://db/idnode"\n'
    )
    s = load_settings(env={"IDNODE_CONFIG": str(cfg)})
    assert s.prefixes == ("88.118", "88.119")
    assert not s.embedded


def test_env_list_and_bool_forms() -> None:
    s = load_settings(env={"IDNODE_PREFIXES": " 88.118 ,88.119,", "IDNODE_DEMO": "yes"})
    assert s.prefixes == ("88.118", "88.119") and s.demo is True


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"IDNODE_HTTP_PORT": "eighty"},
            "invalid setting http_port (from IDNODE_HTTP_PORT): 'eighty' is not an integer",
        ),
        (
            {"IDNODE_ADMIN_PORT": "70000"},
            "admin_port (from IDNODE_ADMIN_PORT): '70000' is not a port",
        ),
        (
            {"IDNODE_BIND": "localhost:80"},
            "bind (from IDNODE_BIND): 'localhost:80' is not an IPv4 or IPv6",
        ),
        ({"IDNODE_ROLE": "root"}, "role (from IDNODE_ROLE): 'root' is not one of"),
        ({"IDNODE_PREFIXES": "88.118,88..9"}, "invalid prefix '88..9'"),
        ({"IDNODE_DATABASE_URL": "mysql://x"}, "must start with postgresql://"),
        ({"IDNODE_LOG_FORMAT": "xml"}, "log_format"),
        ({"IDNODE_DB_POOL_MIN": "20"}, "db_pool_min (20) must not exceed db_pool_max (10)"),
    ],
)
def test_bad_values_name_key_source_and_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env=env)
    assert message in str(info.value)


def test_bad_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown setting 'http_prot'"):
        load_settings(config_file=write(tmp_path, "http_prot = 1\n"), env={})
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config_file=write(tmp_path, "http_port = \n"), env={})
    with pytest.raises(SettingsError, match=r"handle_port \(from .*idnode.toml\): 'x'"):
        load_settings(config_file=write(tmp_path, 'handle_port = "x"\n'), env={})
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(config_file=tmp_path / "missing.toml", env={})


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"handle_port \(from --handle-port\)"):
        load_settings(env={}, flags={"handle_port": -1})


def test_reference_documents_every_setting() -> None:
    table = settings_markdown(setting_flags())
    assert "| `handle_port` | `IDNODE_HANDLE_PORT` | `--handle-port` (serve, siteinfo) |" in table
    assert "| `cache_max_bytes` | `IDNODE_CACHE_MAX_BYTES` |  |" in table  # no flag: none claimed
    for name in Settings.__dataclass_fields__:
        assert f"`{name}`" in table and f"`IDNODE_{name.upper()}`" in table
    readme_ref = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
    assert table in readme_ref.read_text(encoding="utf-8"), (
        "regenerate with: idnode settings --markdown"
    )
