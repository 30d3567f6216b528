"""Quoting what a caller sent, in error messages and log lines, without ever echoing it whole.

A request may carry megabytes in a string field; an error that quoted it back would be as large (past the
client's metadata limit, so the caller sees RESOURCE_EXHAUSTED instead of the error), and a log line per such
request fills a disk. Everything a server repeats from a request goes through `quote`; `truncate` bounds a whole
message built from several parts.
"""

from __future__ import annotations

# Enough to recognise an id or a name; ids and names are at most 128 characters (plasma.ids).
PREVIEW_CHARS = 40


def quote(value: str | bytes, limit: int = PREVIEW_CHARS) -> str:
    """`value` as a Python literal of at most `limit` characters of it, control and non-ASCII characters escaped
    (so one line stays one line), followed by its full length when it was cut: 'aaaa'… (16384 characters)."""
    shown = ascii(value[:limit])
    if len(value) <= limit:
        return shown
    unit = "bytes" if isinstance(value, bytes) else "characters"
    return f"{shown}… ({len(value)} {unit})"


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"
