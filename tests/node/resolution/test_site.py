"""The address this node's HS_SITE advertises: never loopback when clients elsewhere could
reach it (a node bound to every interface used to advertise 127.0.0.1, even in a
container)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from node.resolution.site import site_address
from node.settings import load_settings


def _settings(**flags: str) -> object:
    return load_settings(env={}, flags=flags)


def test_public_address_then_bind() -> None:
    assert site_address(_settings(bind="0.0.0.0", public_address="203.0.113.7")) == "203.0.113.7"  # type: ignore[arg-type]
    assert site_address(_settings(bind="127.0.0.2")) == "127.0.0.2"  # type: ignore[arg-type]


def test_a_wildcard_bind_advertises_the_outward_interface() -> None:
    address = site_address(_settings(bind="0.0.0.0"))  # type: ignore[arg-type]
    if address == "127.0.0.1":
        pytest.skip("this machine has no route outward: loopback is all there is")
    assert not ipaddress.ip_address(address).is_loopback
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as own:
        own.bind((address, 0))  # one of this machine's own addresses
