"""Numeric constants of the Handle protocol (RFC 3652 §2.2, as implemented at 2.10-2.11)."""

from __future__ import annotations

import enum


class OpCode(enum.IntEnum):
    RESOLUTION = 1
    GET_SITE_INFO = 2
    CREATE_HANDLE = 100
    DELETE_HANDLE = 101
    ADD_VALUE = 102
    REMOVE_VALUE = 103
    MODIFY_VALUE = 104
    LIST_HANDLES = 105
    LIST_NAS = 106
    CHALLENGE_RESPONSE = 200
    VERIFY_RESPONSE = 201
    HOME_NA = 300
    UNHOME_NA = 301
    LIST_HOMED_NAS = 302
    SESSION_SETUP = 400
    SESSION_TERMINATE = 401
    SESSION_EXCHANGEKEY = 402
    # CAICT IDIS SDK extensions.
    LOGIN = 2000
    LOGIN_ID_SYSTEM = 2001


class ResponseCode(enum.IntEnum):
    RESERVED = 0  # requests carry 0
    SUCCESS = 1
    ERROR = 2
    SERVER_TOO_BUSY = 3
    PROTOCOL_ERROR = 4
    OPERATION_NOT_SUPPORTED = 5
    RECURSION_COUNT_TOO_HIGH = 6
    SERVER_READ_ONLY = 7
    HANDLE_NOT_FOUND = 100
    HANDLE_ALREADY_EXISTS = 101
    INVALID_HANDLE = 102
    VALUES_NOT_FOUND = 200
    VALUE_ALREADY_EXISTS = 201
    INVALID_VALUE = 202
    OUT_OF_DATE_SITE_INFO = 300
    SERVER_NOT_RESP = 301
    SERVICE_REFERRAL = 302
    PREFIX_REFERRAL = 303
    INVALID_ADMIN = 400
    INSUFFICIENT_PERMISSIONS = 401
    AUTHENTICATION_NEEDED = 402
    AUTHENTICATION_FAILED = 403
    INVALID_CREDENTIAL = 404
    AUTHEN_TIMEOUT = 405
    AUTHEN_ERROR = 406
    # CAICT IDIS SDK extensions.
    LOGIN_AGAIN = 407
    LOGIN_FIRST = 408
    SESSION_TIMEOUT = 500
    SESSION_FAILED = 501
    SESSION_KEY_INVALID = 502
    NEED_TO_REAUTHENTICATE = 503
    SESSION_NO_KEY = 504
    SESSION_INVALID = 505
    # CAICT IDIS SDK extension: the credential check failed (docs/authentication.md).
    CREDENTIAL_CHECK_FAILED = 3001


class OpFlag(enum.IntFlag):
    AUTH = 0x80000000  # authoritative
    CERT = 0x40000000  # sign the reply
    ENCR = 0x20000000
    RECU = 0x10000000  # recursion allowed
    CACR = 0x08000000  # cache certified
    CONT = 0x04000000  # continuous
    KPAL = 0x02000000  # keep alive
    PUBL = 0x01000000  # public values only
    RRDG = 0x00800000  # reply carries a digest of the request
    OVRW = 0x00400000
    MINT = 0x00200000
    DNRF = 0x00100000  # do not refer


class Permission(enum.IntFlag):
    """Per-value permission bits (RFC 3651 §3.1)."""

    PUBLIC_WRITE = 0x01
    PUBLIC_READ = 0x02
    ADMIN_WRITE = 0x04
    ADMIN_READ = 0x08


DEFAULT_PERMISSIONS = Permission.ADMIN_READ | Permission.ADMIN_WRITE | Permission.PUBLIC_READ


class AdminPerm(enum.IntFlag):
    """HS_ADMIN permission bits (RFC 3651 §3.2.1), bit 0 = least significant."""

    ADD_HANDLE = 1 << 0
    DELETE_HANDLE = 1 << 1
    ADD_NA = 1 << 2
    DELETE_NA = 1 << 3
    MODIFY_VALUE = 1 << 4
    REMOVE_VALUE = 1 << 5
    ADD_VALUE = 1 << 6
    MODIFY_ADMIN = 1 << 7
    REMOVE_ADMIN = 1 << 8
    ADD_ADMIN = 1 << 9
    READ_VALUE = 1 << 10
    LIST_HANDLES = 1 << 11


ALL_ADMIN_PERMS = AdminPerm(0xFFF)


class TTLType(enum.IntEnum):
    RELATIVE = 0
    ABSOLUTE = 1
