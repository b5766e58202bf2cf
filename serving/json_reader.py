"""Request bodies read as TF Serving's RapidJSON reader reads them.

The first JSON value of the body (kParseStopWhenDoneFlag: anything after it is
ignored), with RapidJSON's extras (NaN, Inf, Infinity and their negatives:
kParseNanAndInfFlag), its number types (integers kept when they fit int64 or
uint64, otherwise doubles; a double that overflows is an error) and its error
messages with byte offsets, worded as TF Serving reports them.

It knows nothing of tensors; serving.json_tensor reads the value it returns.
"""

from __future__ import annotations

import json
import math
import re

from serving.errors import ServingError, invalid_argument

_INT_MIN, _UINT64_END = -(2**63), 2**64


class _NumberTooBig(Exception):
    def __init__(self, literal: str):
        self.literal = literal


def _parse_int(literal: str):
    # RapidJSON keeps integers that fit int64/uint64 and reads others as
    # doubles; checking the length first keeps Python from converting a
    # million-digit literal.
    if len(literal) <= 20:
        value = int(literal)
        if _INT_MIN <= value < _UINT64_END:
            return value
    return _parse_float(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _NumberTooBig(literal)
    return value


_decoder = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float)
_JSON_SPACE = " \t\n\r"
# RapidJSON also reads Inf/-Inf and -NaN (kParseNanAndInfFlag); Python does not.
_NONSTANDARD_RE = re.compile(r'"(?:[^"\\]|\\.)*"|-?Inf(?:inity)?|-NaN')
_PY_TO_RAPIDJSON_ERRORS = {
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}


def _standardize(match: re.Match) -> str:
    token = match.group()
    if token.startswith('"'):
        return token
    if token == "-NaN":
        return "NaN"
    return "-Infinity" if token.startswith("-") else "Infinity"


def _innermost_container(text: str, pos: int) -> str:
    """'[' or '{': the container open at `pos` (strings skipped)."""
    stack = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else "["


def _parse_error(text: str, err: json.JSONDecodeError) -> ServingError:
    if err.msg == "Expecting ',' delimiter":
        message = (
            "Missing a comma or '}' after an object member."
            if _innermost_container(text, err.pos) == "{"
            else "Missing a comma or ']' after an array element."
        )
    else:
        message = _PY_TO_RAPIDJSON_ERRORS.get(err.msg, "Invalid value.")
    return invalid_argument(f"JSON Parse error: {message} at offset: {err.pos}")


def parse(body: bytes):
    """The first JSON value in `body`; INVALID_ARGUMENT with RapidJSON's message if there is none.

    Strings that are not UTF-8 keep their raw bytes as surrogates.
    """
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    text = body.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    if start == len(text):
        raise invalid_argument(f"JSON Parse error: The document is empty. at offset: {start}")
    try:
        try:
            value, _ = _decoder.raw_decode(text, start)
        except json.JSONDecodeError as err:
            fixed = _NONSTANDARD_RE.sub(_standardize, text)
            if fixed == text:
                raise _parse_error(text, err) from None
            try:
                value, _ = _decoder.raw_decode(fixed, start)
            except json.JSONDecodeError:
                raise _parse_error(text, err) from None
    except _NumberTooBig as err:
        offset = max(text.find(err.literal), 0)
        raise invalid_argument(
            f"JSON Parse error: Number too big to be stored in double. at offset: {offset}"
        ) from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: document nested too deeply") from None
    return value
