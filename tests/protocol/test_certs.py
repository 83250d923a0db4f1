"""HS_CERT permission semantics, as Handle v9's verifier applies them
(``HandleVerifier.verifyPermissionsAreAuthorizedOverHandle``)."""

from __future__ import annotations

import pytest

from protocol.certs import CertPerm, Perm, authorizes

HANDLE = "88.118.2/ROLL-0001"

PERM_CASES = [
    # (perm, granted over, handle, authorised)
    (Perm.EVERYTHING, "", "99.1/anything", True),
    (Perm.HANDLES_UNDER_THIS_PREFIX, "0.NA/88.118", "88.118/X", True),
    (Perm.HANDLES_UNDER_THIS_PREFIX, "0.NA/88.118", "88.118.2/X", False),
    (Perm.HANDLES_UNDER_THIS_PREFIX, "0.NA/88.118", "0.NA/88.118", False),
    (Perm.HANDLES_UNDER_THIS_PREFIX, "0.na/88.118", "88.118/x", True),
    (Perm.HANDLES_UNDER_THIS_PREFIX, "88.118", "88.118/X", False),  # must be a 0.NA handle
    (Perm.DERIVED_PREFIXES, "0.NA/88.118", "88.118.2/ROLL-0001", True),
    (Perm.DERIVED_PREFIXES, "0.NA/88.118", "88.118.2.7/X", True),
    (Perm.DERIVED_PREFIXES, "0.NA/88.118", "0.NA/88.118.2", True),
    (Perm.DERIVED_PREFIXES, "0.NA/88.118", "88.118/X", False),
    (Perm.DERIVED_PREFIXES, "0.NA/88.118", "0.NA/88.118", False),
    (Perm.DERIVED_PREFIXES, "0.NA/88.118", "88.1180/X", False),
    (Perm.DERIVED_PREFIXES, "0.NA/88.118", "88.119.2/X", False),
    (Perm.THIS_HANDLE, "88.118.2/ROLL-0001", "88.118.2/ROLL-0001", True),
    # The suffix compares case-sensitively, as in the reference.
    (Perm.THIS_HANDLE, "88.118.2/ROLL-0001", "88.118.2/roll-0001", False),
    (Perm.THIS_HANDLE, "88.118.2/ROLL-0001", "88.118.2/ROLL-0002", False),
    (Perm.THIS_HANDLE, "0.NA/88.118.2", "0.NA/88.118.2", True),
    (Perm.THIS_HANDLE, "0.NA/88.118.2", "88.118.2/ROLL-0001", True),
    (Perm.THIS_HANDLE, "0.NA/88.118.2", "88.118.2.1/X", False),
    ("unknownPerm", "0.NA/88.118", "88.118/X", False),
]


@pytest.mark.parametrize(("perm", "over", "handle", "expected"), PERM_CASES)
def test_perm_semantics(perm: str, over: str, handle: str, expected: bool) -> None:
    assert authorizes([CertPerm(over, perm)], handle) is expected


def test_no_perms_authorise_nothing() -> None:
    assert not authorizes([], HANDLE)
