"""Building the native front's authentication from settings: which answer forms are
accepted, how keys held elsewhere are checked, how long sessions live."""

from __future__ import annotations

from collections.abc import Callable

from node.auth import AuthGate, SecretKeyVerifier
from node.auth.native.answers import AnswerChecker
from node.auth.native.remote import HomeServerCheck
from node.auth.native.sessions import NativeSessions
from node.fronts.native.auth import NativeAuth
from node.resolution.resolver import Resolver
from node.resolution.site import Site
from node.runtime.metrics import NodeMetrics
from node.secrets.vault import SecretVault
from node.settings import Settings
from protocol.challenge import SeckeyForm
from registry.store import Registry

# Secret-key answer forms built on MD5 (docs/authentication.md), refused when
# native_accept_md5 is false.
MD5_FORMS = frozenset({SeckeyForm.MD5_OLD, SeckeyForm.MD5})


def native_auth(
    s: Settings,
    registry: Registry,
    vault: SecretVault,
    resolver: Resolver,
    limiter: AuthGate,
    site: Callable[[], Site],
    metrics: NodeMetrics,
    *,
    clock: Callable[[], float],
    monotonic: Callable[[], float],
) -> NativeAuth:
    forms = None if s.native_accept_md5 else frozenset(SeckeyForm) - MD5_FORMS
    home = HomeServerCheck(resolver, timeout_s=s.native_home_verify_timeout_s, clock=clock)
    checker = AnswerChecker(
        registry,
        vault,
        limiter,
        seckey_forms=forms,
        max_pbkdf2_iterations=s.native_max_pbkdf2_iterations,
        max_keys_tried=s.auth_max_keys_tried,
        remote=home,
        held_here=home.held_here,
    )
    sessions = NativeSessions(
        max_sessions=s.native_sessions_max,
        max_lifetime_s=s.native_session_lifetime_s,
        idle_timeout_s=s.native_session_idle_timeout_s,
    )
    secrets = SecretKeyVerifier(
        registry, vault, limiter, monotonic=monotonic, max_keys_tried=s.auth_max_keys_tried
    )
    return NativeAuth(
        checker,
        secrets,
        limiter,
        site,
        challenge_timeout_s=s.native_auth_timeout_s,
        sessions=sessions,
        login_lifetime_s=s.native_login_lifetime_s,
        monotonic=monotonic,
        rate_limited=metrics.auth_rate_limited.labels("native").inc,
    )
