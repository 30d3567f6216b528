"""Bearer tokens: a file of hashed tokens with their roles, checked in constant time.

One token per line, `<role> <name> sha256:<64 hex digits>`; `#` starts a comment. Only the SHA-256 of a token is
stored, so the file tells a reader nothing it could call with. Make one with

    python -m plasma.server.tokens new ROLE NAME    the token on stdout (give it to the client), the line on stderr

Tokens are 256 random bits, so one unsalted SHA-256 is enough: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from plasma.server.roles import Role

_PREFIX = "sha256:"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Holder:
    """Who a token belongs to, as written in the file."""

    name: str
    role: Role


@dataclass(frozen=True)
class Tokens:
    entries: tuple[tuple[bytes, Holder], ...]

    @classmethod
    def load(cls, path: Path) -> Tokens:
        """Parses the file; a bad line raises ValueError with its number (never its content: it may be a token)."""
        entries = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            fields = text.split()
            if len(fields) != 3 or not fields[2].startswith(_PREFIX):
                raise ValueError(f"{path} line {number}: expected '<role> <name> sha256:<64 hex digits>'")
            try:
                role = Role.parse(fields[0])
                hashed = bytes.fromhex(fields[2].removeprefix(_PREFIX))
            except ValueError as exc:
                raise ValueError(f"{path} line {number}: {exc}") from None
            if len(hashed) != hashlib.sha256().digest_size:
                raise ValueError(f"{path} line {number}: the sha256 must be 64 hex digits")
            entries.append((hashed, Holder(fields[1], role)))
        return cls(tuple(entries))

    def holder(self, token: str) -> Holder | None:
        """The token's holder, or None. Compares against every entry, so the time taken says nothing about which
        entry came close."""
        presented = digest(token)
        found = None
        for hashed, holder in self.entries:
            if hmac.compare_digest(presented, hashed):
                found = holder
        return found


def new(role: Role, name: str) -> tuple[str, str]:
    """A fresh token and its line for the tokens file."""
    token = secrets.token_urlsafe(32)
    return token, f"{role.label} {name} {_PREFIX}{digest(token).hex()}"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Plasma bearer tokens")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("new", help="print a new token (stdout) and its tokens-file line (stderr)")
    make.add_argument("role", type=Role.parse, help="reader or operator")
    make.add_argument("name", help="who holds it (one word; logged with each refused call)")
    args = parser.parse_args(argv)
    if not args.name or any(c.isspace() for c in args.name):
        parser.error("the name must be one word")
    token, line = new(args.role, args.name)
    print(line, file=sys.stderr)
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
