"""Authentication (who is asking) and authorization (the HS_ADMIN model) for the fronts.

- ``secrets``: the hashed form HS_SECKEY values are stored in.
- ``identity``: Identity, AuthContext and the AuthError family.
- ``chain``: the pluggable chain of schemes and the plain-HTTP policy.
- ``gate``: failure limits per client and identity, reserved before each costly check;
  ``checks``: the worker threads those checks run in; ``proxies``: the real client
  behind trusted proxies; ``ratelimit``: the sliding-window failure counts.
- ``basic``: HTTP Basic with ``index:handle`` users; ``verifier`` checks the secret.
- ``handleauth``: the ``Authorization: Handle`` header; ``sessions``: the session store;
  ``challenge``: session use and challenge answers (HS_PUBKEY; ``pubkey`` verifies);
  ``clientcert``: TLS client certificates naming an admin.
- ``permissions`` / ``authorizer``: which HS_ADMIN bits a change needs, who holds them.
"""

from node.auth.authorizer import Authorizer, Denied, parse_admin_list
from node.auth.basic import BasicScheme
from node.auth.chain import PLAIN_CREDENTIAL_POLICIES, AuthChain, AuthScheme
from node.auth.challenge import ChallengeVerifier, SessionScheme
from node.auth.clientcert import PEERCERT_DER, ClientCertScheme
from node.auth.gate import AuthGate
from node.auth.identity import AuthContext, AuthenticationRequired, AuthError, Identity
from node.auth.ratelimit import FailureLimiter
from node.auth.sessions import Session, SessionLimitReached, SessionStore
from node.auth.verifier import SecretKeyVerifier

__all__ = [
    "PEERCERT_DER",
    "PLAIN_CREDENTIAL_POLICIES",
    "AuthChain",
    "AuthContext",
    "AuthError",
    "AuthGate",
    "AuthScheme",
    "AuthenticationRequired",
    "Authorizer",
    "BasicScheme",
    "ChallengeVerifier",
    "ClientCertScheme",
    "Denied",
    "FailureLimiter",
    "Identity",
    "SecretKeyVerifier",
    "Session",
    "SessionLimitReached",
    "SessionScheme",
    "SessionStore",
    "parse_admin_list",
]
