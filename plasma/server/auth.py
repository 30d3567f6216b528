"""Per-role authorization: one server interceptor that checks every call against plasma.server.roles.

The caller's identity is, in this order: a bearer token in `authorization: Bearer <token>` metadata (when the
server has a tokens file), else the client certificate verified during the mutual-TLS handshake, whose role is a
URI SAN `spiffe://plasma/role/<role>` (scripts/make_certs.py issues them). A call with no identity is refused with
UNAUTHENTICATED, a caller whose role is too low with PERMISSION_DENIED; both messages name the method, the role
it needs and, for the latter, the caller and its role.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc

from plasma import log as plog
from plasma.server import roles
from plasma.server.roles import Role
from plasma.server.tokens import Tokens

log = plog.get(__name__)

ROLE_URI_PREFIX = "spiffe://plasma/role/"
_BEARER = "bearer "


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role | None
    # How the caller proved it: "client certificate" or "bearer token".
    source: str

    def describe(self) -> str:
        has = f"the {self.role.label} role" if self.role is not None else "no role"
        return f"caller {self.name!r} ({self.source}) has {has}"


class Refusal(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def certificate_identity(context: grpc.ServicerContext) -> Identity | None:
    """The verified client certificate's identity, or None when the handshake carried none."""
    # Each property is a list of values (types-grpcio says bytes, which is not what grpc returns).
    auth = cast(Mapping[str, Sequence[bytes]], context.auth_context())
    names = auth.get("x509_common_name") or auth.get("x509_subject")
    if not names:
        return None
    found = []
    for uri in auth.get("peer_uri", []):
        text = uri.decode(errors="replace")
        if text.startswith(ROLE_URI_PREFIX):
            try:
                found.append(Role.parse(text.removeprefix(ROLE_URI_PREFIX)))
            except ValueError:
                continue  # a role this server does not know grants nothing
    return Identity(names[0].decode(errors="replace"), max(found) if found else None, "client certificate")


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of `authorization: Bearer <token>`; "" for an authorization value of another form; None if absent."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            return text[len(_BEARER):].strip() if text.lower().startswith(_BEARER) else ""
    return None


class Authorizer:
    """Decides one call: the identity it carries against the role its method needs."""

    def __init__(self, tokens: Tokens | None) -> None:
        self._tokens = tokens

    def identity(self, token: str | None, context: grpc.ServicerContext) -> Identity | None:
        if token is not None and self._tokens is not None:
            holder = self._tokens.holder(token) if token else None
            if holder is None:
                raise Refusal(grpc.StatusCode.UNAUTHENTICATED,
                              "the bearer token is not recognized (expected 'authorization: Bearer <token>' with a "
                              "token from this server's tokens file)")
            return Identity(holder.name, holder.role, "bearer token")
        return certificate_identity(context)

    def check(self, method: str, token: str | None, context: grpc.ServicerContext) -> None:
        """Returns when the call may proceed; raises Refusal otherwise."""
        needed = roles.ROLES.get(method)
        short = method.rpartition("/")[2]
        if needed is None:
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED,
                          f"{method} is in no role table (plasma.server.roles.ROLES), so no caller may call it")
        identity = self.identity(token, context)
        if identity is None:
            raise Refusal(grpc.StatusCode.UNAUTHENTICATED,
                          f"{short} needs the {needed.label} role and the call carries no identity: present a "
                          "client certificate issued by this server's client CA or 'authorization: Bearer <token>' "
                          "metadata")
        if identity.role is None or identity.role < needed:
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED,
                          f"{short} needs the {needed.label} role; {identity.describe()}")


class AuthorizationInterceptor(grpc.ServerInterceptor):
    """Guards every method but health and reflection with Authorizer.check, before the handler runs."""

    def __init__(self, authorizer: Authorizer) -> None:
        self._authorizer = authorizer

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or roles.service_of(method) in roles.OPEN_SERVICES:
            return handler
        token = bearer_token(handler_call_details.invocation_metadata)
        return _guarded(handler, lambda context: self._check(method, token, context))

    def _check(self, method: str, token: str | None, context: grpc.ServicerContext) -> None:
        try:
            self._authorizer.check(method, token, context)
        except Refusal as refusal:
            log.warning("refused method=%s code=%s peer=%s: %s", method, refusal.code.name, context.peer(),
                        refusal.message)
            context.abort(refusal.code, refusal.message)


_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def _guarded(handler: grpc.RpcMethodHandler, check: Callable[[grpc.ServicerContext], None]) -> grpc.RpcMethodHandler:
    """The same handler with `check(context)` run before its behaviour (which it may abort)."""
    for kind in _KINDS:
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return handler._replace(**{kind: _checked(behaviour, check)})  # type: ignore[attr-defined]
    return handler


def _checked(behaviour: Callable[[Any, grpc.ServicerContext], Any],
             check: Callable[[grpc.ServicerContext], None]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        check(context)
        return behaviour(request, context)

    return run
