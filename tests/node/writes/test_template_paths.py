"""A record citing a template is checked on the native admin path and the command
line too (HTTP, batches and the CAICT-style endpoints have their own tests); each
refusal names the field, the value and the rule, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.app import Node
from node.client.admin import AdminClient, AdminError, Credentials
from node.demo.dataset import SILK_MILL
from node.templates.shipped import ROLL
from protocol.codes import ResponseCode
from protocol.templates import Field, Template
from protocol.values import HandleValue
from tests.node.conftest import StartNode
from tests.node.process_support import MILL, run_idnode
from tests.node.templates_support import roll_fields

A = Credentials("88.118.2/ADMIN", 300, secret=SILK_MILL.admin_secret.encode())


def roll(**changes: str) -> tuple[HandleValue, ...]:
    return tuple(ROLL.record(roll_fields(1, **changes)))


@pytest.fixture
async def node(start_http_node: StartNode) -> Node:
    return await start_http_node()


async def test_native_admin_writes_are_checked(node: Node) -> None:
    assert node.handle_port
    async with AdminClient("127.0.0.1", node.handle_port, A) as c:
        with pytest.raises(AdminError) as err:
            await c.create("88.118.2/N-ROLL", roll(widthCm="wide"))
        assert err.value.response_code == ResponseCode.INVALID_VALUE
        assert "widthCm (index 2006) = 'wide': not a decimal number" in str(err.value)
        assert await c.create("88.118.2/N-ROLL", roll()) == "88.118.2/N-ROLL"
        with pytest.raises(AdminError) as err:  # one value, checked with the record it makes
            await c.modify("88.118.2/N-ROLL", (HandleValue(2013, "productionDate", b"03/18"),))
        assert "productionDate (index 2013) = '03/18': not a date" in str(err.value)
        with pytest.raises(AdminError) as err:
            await c.remove("88.118.2/N-ROLL", (2009,))  # rollNumber is required
        assert "rollNumber (index 2009): required, missing" in str(err.value)
        await c.modify("88.118.2/N-ROLL", (HandleValue(2008, "colour", "大红".encode()),))


def _json_values(values: tuple[HandleValue, ...] | list[HandleValue]) -> str:
    return json.dumps(
        [
            {
                "index": v.index,
                "type": v.type,
                "data": {"format": "string", "value": v.data.decode()},
            }
            for v in values
        ],
        ensure_ascii=False,
    )


def test_command_line_writes_are_checked(database_url: str, tmp_path: Path) -> None:
    env = {"IDNODE_DATABASE_URL": database_url, "IDNODE_DATA_DIR": str(tmp_path / "data")}

    def idnode(*args: str, input: str | None = None) -> tuple[int, str]:
        result = run_idnode(*args, env=env, input=input)
        assert "Traceback" not in result.stderr
        return result.returncode, result.stderr.strip()

    assert idnode("enterprise", "add", "--name", "盛泽示例丝绸", "--credit-code", MILL)[0] == 0
    assert idnode("prefix", "add", "88.118.2", "--enterprise", MILL)[0] == 0
    template = Template(
        "88.118.2/TPL.LOT.V1",
        "1.0",
        "lot",
        (Field("lotNumber", 2000, type="string", max_length=8), Field("kg", 2001, type="decimal")),
    )
    body = [
        {
            "index": 1000,
            "type": "IDIS_TEMPLATE",
            "data": {"format": "string", "value": template.to_json()},
        }
    ]
    code, _ = idnode("handle", "put", template.handle, "-f", "-", input=json.dumps(body))
    assert code == 0
    bad = [
        HandleValue(1001, "TEMPLATE", template.handle.encode()),
        HandleValue(2000, "lotNumber", b"TOO-LONG-LOT"),
        HandleValue(2001, "kg", b"12 kg"),
    ]
    code, err = idnode("handle", "put", "88.118.2/LOT-1", "-f", "-", input=_json_values(bad))
    assert code != 0 and len(err.splitlines()) == 1
    assert "lotNumber (index 2000) = 'TOO-LONG-LOT': longer than 8 characters" in err
    assert "kg (index 2001) = '12 kg': not a decimal number" in err
    good = [bad[0], HandleValue(2000, "lotNumber", b"L-1"), HandleValue(2001, "kg", b"12.5")]
    assert idnode("handle", "put", "88.118.2/LOT-1", "-f", "-", input=_json_values(good))[0] == 0
    # A published template does not change: a new version is a new handle.
    changed = template.to_json().replace('"lot"', '"lots"')
    body[0]["data"]["value"] = changed
    code, err = idnode("handle", "put", template.handle, "-f", "-", input=json.dumps(body))
    assert code != 0 and "is a published template and does not change" in err
