"""Checks every request gets before its endpoint runs (issue 25 item 5, issue 26 item 3):

- a JSON body nested deeper than `MAX_JSON_DEPTH` is refused (422 on the API, 400 on the
  relay), so that no code walking a body recursively can overflow the stack (a body nested
  1,000 deep was a 500);
- an API body that is not UTF-8 is a 422, as `docs/api.md` says;
- no string of an API body (names and values alike), query parameter or path parameter may
  hold a control character or an unpaired surrogate (`text.check_text`): 422 naming the
  field. PostgreSQL cannot store NUL at all, and control characters end up in logs and on
  terminals. new-api's newline-separated lists (`MULTILINE_FIELDS`) may hold line breaks
  and tabs, nothing else.

Cost on the hot path: two `bytes.count` and one regular-expression search over a small
body; bodies are parsed here only when that search finds an escape worth a look.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Any

import orjson
from starlette.requests import Request

from quotaledger.server.errors import HTTPError
from quotaledger.text import check_text

MAX_JSON_DEPTH = 128
MULTILINE_FIELDS = frozenset({"allow_ips", "model_limits"})  # new-api's lists, one a line
_LINE_BREAKS = str.maketrans("", "", "\t\n\r")
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
# In JSON text a control character or surrogate is escaped (\u0000, \n...), except DEL and
# the C1 controls, which may come raw (as UTF-8: C2 80..C2 9F).
_MAYBE_CONTROL = re.compile(rb"\\[ubfnrt]|\x7f|\xc2[\x80-\x9f]")


def check_body(path: str, body: bytes) -> None:
    """Refuse a body too deep (any route), not UTF-8 or holding control characters (API)."""
    api = path.startswith("/api/")
    if too_deep(body, MAX_JSON_DEPTH):
        status = 422 if api else 400
        raise HTTPError(status, f"body: invalid JSON (nested deeper than {MAX_JSON_DEPTH} levels)")
    if not api:
        return
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(422, "body: invalid JSON (not UTF-8)") from None
    if _MAYBE_CONTROL.search(body) is not None:
        _check_strings(body)


def too_deep(body: bytes, limit: int) -> bool:
    """Whether `body`'s arrays and objects nest deeper than `limit` (brackets inside strings
    do not count). Cheap when the body has no more than `limit` brackets (the usual case)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    # Outside strings, in C: drop escaped backslashes, then escaped quotes; every other
    # segment between the quotes left is then outside a string.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    steps = array("b", brackets.translate(_OPEN_CLOSE))  # +1 opens, -1 closes
    return max(accumulate(steps), default=0) > limit


def _check_strings(body: bytes) -> None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # not JSON: the endpoint's parser says so (422)
    pending: list[tuple[str, Any]] = [("", parsed)]
    while pending:  # iterative: depth is bounded above, but no recursion is needed
        field, value = pending.pop()
        if isinstance(value, str):
            _check_field(field, value)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_field(field, key)  # named by its parent: the key may be the bad text
                pending.append((f"{field}.{key}" if field else key, item))
        elif isinstance(value, list):
            pending.extend((f"{field}.{i}" if field else str(i), v) for i, v in enumerate(value))


def _check_field(field: str, value: str) -> None:
    name = field or "body"
    if name.rpartition(".")[2] in MULTILINE_FIELDS:
        value = value.translate(_LINE_BREAKS)
    check_text(name, value)


async def plain_parameters(request: Request) -> None:
    """A dependency of every framework route: query and path parameters (names and values)
    hold no control character. 422 naming the parameter."""
    for name, value in request.query_params.multi_items():
        check_text("query", name)  # not named by itself: it may be the bad text
        check_text(name, value)
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_text(name, value)
