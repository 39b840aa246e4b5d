"""What a failed connection says: a mistake in the set-up, or trouble that may pass.

httpx raises one `ConnectError` for every way a connection can fail; what
happened is in the exception chain (`__cause__`, `__context__`): a
`socket.gaierror` for a name that does not resolve, `ConnectionRefusedError`,
an `ssl.SSLCertVerificationError`, or another `ssl.SSLError` when the other
end does not speak TLS (a plain HTTP server answers a ClientHello with
bytes OpenSSL reads as "wrong version number" or "record layer failure").
The classification is by exception type and errno, never by message text.

A set-up mistake is only a mistake before the target has answered once:
the same unknown host in the middle of a run that has been talking to it is
a resolver or a network in trouble, and is waited for (the caller decides).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Iterator

# A chain is a handful of links deep; a crafted or looping one stops here.
_MAX_LINKS = 16
# The resolver could not answer (no network, no name server): says nothing
# about the name itself.
_RESOLVER_TROUBLE = frozenset({socket.EAI_AGAIN})
# The other end closed the connection during the handshake: a server
# restarting or a middlebox, not proof that it does not speak TLS.
_CLOSED_IN_HANDSHAKE = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


@dataclass(frozen=True)
class ConnectFailure:
    reason: str  # a few words, for the line that says what a wait is for: "connection refused"
    explanation: str  # the whole story, for an error line: which host, what to check
    setup_mistake: bool  # waiting will not help unless someone changes the set-up


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen and len(seen) < _MAX_LINKS:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def classify_connect_failure(error: BaseException, hostname: str, netloc: str) -> ConnectFailure:
    """What a failure to connect to `netloc` (host:port) means, from its exception chain."""
    links = list(_chain(error))
    for link in links:
        if isinstance(link, ssl.SSLCertVerificationError):
            why = link.verify_message or link.reason or "verification failed"
            return ConnectFailure(f"TLS certificate does not verify ({why})",
                                  f"the TLS certificate of {netloc} does not verify ({why})", True)
    for link in links:
        if isinstance(link, _CLOSED_IN_HANDSHAKE):
            return ConnectFailure("connection closed during the TLS handshake",
                                  f"{netloc} closed the connection during the TLS handshake", False)
        if isinstance(link, ssl.SSLError):
            why = link.reason or type(link).__name__
            return ConnectFailure(f"TLS handshake failed ({why})",
                                  f"the TLS handshake with {netloc} failed ({why}): it does not speak HTTPS "
                                  f"on that port (a plain HTTP server is webdav+http://)", True)
    for link in links:
        if isinstance(link, socket.gaierror):
            if link.errno in _RESOLVER_TROUBLE:
                return ConnectFailure("no answer from the name server",
                                      f"the name server gave no answer for {hostname} ({link.strerror})", False)
            why = link.strerror or "does not resolve"
            return ConnectFailure(f"host name does not resolve ({why})", f"unknown host {hostname} ({why})", True)
        if isinstance(link, ConnectionRefusedError):
            return ConnectFailure("connection refused",
                                  f"nothing listens on {netloc} ({link.strerror or 'connection refused'})", True)
    for link in links:
        if isinstance(link, OSError) and link.strerror:
            return ConnectFailure(f"cannot connect ({link.strerror})", f"cannot connect to {netloc} ({link.strerror})",
                                  False)
    why = type(error).__name__
    return ConnectFailure(f"cannot connect ({why})", f"cannot connect to {netloc} ({why})", False)
