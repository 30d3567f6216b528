"""The one rule for ids and names in every Plasma API: each service checks them where a request comes in, each
store checks them again before a path is built, and clients can check them before they call.

An id (dataset_id, model_id, simulation_id, run_id, packet_id, ...) names a directory or file in a store, so it
must be a safe file name on every OS: 1..128 ASCII letters, digits, '-', '_' and '.', not starting or ending with
'.' (no hidden files, no '..'; Windows drops a trailing dot), and not a Windows device name (CON, NUL, COM1...).

A name (a dataset's or packet's lineage name, a task's label, a Gymnasium environment id) is shown and logged but
never becomes a path: 1..128 ASCII letters, digits and '-', '_', '.', '=', '+', '/', starting with a letter, a
digit or '_'. No spaces or control characters, so a name cannot forge a log line or a `key=value` field, and no
':' so a Gymnasium id cannot take the "module:Env" form that makes gymnasium import a module.

Errors quote at most a short, escaped prefix of the value (plasma.quoting), never the whole of it.
"""

from __future__ import annotations

import re

from plasma.quoting import quote

MAX_LENGTH = 128

_ID = re.compile(r"[A-Za-z0-9_-](?:[A-Za-z0-9._-]*[A-Za-z0-9_-])?")
_WINDOWS_DEVICE = re.compile(r"(?:con|prn|aux|nul|com[0-9]|lpt[0-9])(?:\..*)?", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._=+/-]*")

ID_RULE = f"1..{MAX_LENGTH} ASCII letters, digits, '-', '_' or '.' (not first or last)"
NAME_RULE = f"1..{MAX_LENGTH} ASCII letters, digits, '-', '_', '.', '=', '+' or '/' (a letter, digit or '_' first)"


class InvalidId(ValueError):
    """An id or name that breaks the rule (servers answer INVALID_ARGUMENT); the message names the field."""


def is_valid_id(value: str) -> bool:
    return (len(value) <= MAX_LENGTH and _ID.fullmatch(value) is not None
            and _WINDOWS_DEVICE.fullmatch(value) is None)


def is_valid_name(value: str) -> bool:
    return len(value) <= MAX_LENGTH and _NAME.fullmatch(value) is not None


def check_id(field: str, value: str, *, optional: bool = False) -> str:
    """`value` if it is a valid id (or empty, when `optional`); else InvalidId naming `field`."""
    _check(field, value, optional, is_valid_id(value), "id", ID_RULE)
    return value


def check_name(field: str, value: str, *, optional: bool = False) -> str:
    """`value` if it is a valid name (or empty, when `optional`); else InvalidId naming `field`."""
    _check(field, value, optional, is_valid_name(value), "name", NAME_RULE)
    return value


def _check(field: str, value: str, optional: bool, valid: bool, kind: str, rule: str) -> None:
    if not value:
        if optional:
            return
        raise InvalidId(f"{field} is required: {rule}")
    if valid:
        return
    if len(value) > MAX_LENGTH:
        raise InvalidId(f"{field} {quote(value)} is too long for a{'n' if kind == 'id' else ''} {kind}: "
                        f"at most {MAX_LENGTH} characters")
    raise InvalidId(f"{field} {quote(value)} is not a valid {kind}: use {rule}")
