"""Native Handle authentication (docs/authentication.md): pending challenges, sessions
and the checking of challenge answers, shared by the UDP and TCP fronts (an answer may
come over another connection, or another transport, than its challenge)."""
