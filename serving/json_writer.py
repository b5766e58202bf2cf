"""JSON text exactly as TF Serving's RapidJSON writers lay it out.

TF Serving writes REST bodies with RapidJSON's PrettyWriter (4-space indent,
kFormatSingleLineArray where it asks for it) and quotes JSON values in error
messages with the plain Writer. This module reproduces those bytes: the
layout (`Writer`), string escaping (`quote`), doubles as Writer::Double prints
them, and float tensors as TF Serving's WriteDecimal prints them (`decimals`:
six significant digits unless that does not round-trip, then max_digits10).

It knows nothing of tensors or of the REST API; serving.json_tensor drives it.
"""

from __future__ import annotations

import contextlib
import math
import re
from decimal import Decimal

import numpy as np

_DEBUG_LIMIT = 256  # TF Serving truncates JSON quoted in messages to ~256 bytes.


class _WriterStop(Exception):
    """RapidJSON's writer refusing a value (NaN in a debug string) or the limit."""


class Writer:
    """RapidJSON's PrettyWriter (4-space indent), as TF Serving drives it.

    `single_line` is kFormatSingleLineArray: array elements on one line. The
    output is text; raw bytes of non-UTF-8 strings travel as surrogates and
    come back out unchanged in `bytes()`.
    """

    def __init__(self, limit: int | None = None):
        self.out: list[str] = []
        self.size = 0
        self.stack: list[list] = []  # [in_array, value_count] per open container
        self.single_line = False
        self.limit = limit

    def _put(self, text: str) -> None:
        self.out.append(text)
        self.size += len(text)

    def _check_limit(self) -> None:
        if self.limit is not None and self.size >= self.limit:
            raise _WriterStop

    def _indent(self) -> str:
        return " " * (4 * len(self.stack))

    def _prefix(self) -> None:
        self._check_limit()
        if not self.stack:
            return
        level = self.stack[-1]
        if level[0]:
            if level[1] > 0:
                self._put(", " if self.single_line else ",")
            if not self.single_line:
                self._put("\n" + self._indent())
        else:
            if level[1] > 0:
                self._put(",\n" if level[1] % 2 == 0 else ": ")
            else:
                self._put("\n")
            if level[1] % 2 == 0:
                self._put(self._indent())
        level[1] += 1

    def raw(self, text: str) -> None:
        """A value already rendered as JSON text."""
        self._prefix()
        self._put(text)

    def string(self, text: str) -> None:
        self.raw(quote(text))

    key = string

    def double(self, x: float) -> None:
        """A double as Writer::Double: the separator goes out before NaN is refused."""
        self._prefix()
        self._put(_rapidjson_double(x))

    def start(self, in_array: bool) -> None:
        self._prefix()
        self._put("[" if in_array else "{")
        self.stack.append([in_array, 0])

    def end(self) -> None:
        self._check_limit()
        in_array, count = self.stack.pop()
        if count and not (in_array and self.single_line):
            self._put("\n" + self._indent())
        self._put("]" if in_array else "}")

    def scalars(self, items: list[str]) -> None:
        """A whole array of pre-rendered scalars: start, values, end at once."""
        self.start(True)
        if items:
            if self.single_line:
                self._put(", ".join(items))
            else:
                sep = "\n" + self._indent()
                self._put(sep + ("," + sep).join(items))
            self.stack[-1][1] = len(items)
        self.end()

    def text(self) -> str:
        return "".join(self.out)

    def bytes(self) -> bytes:
        return self.text().encode("utf-8", "surrogateescape")


_ESCAPE_RE = re.compile(r'[\x00-\x1f"\\]')
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def quote(text: str) -> str:
    """A JSON string literal as RapidJSON writes it."""
    # RapidJSON escapes only control characters (\u00XX, upper-case hex),
    # the quote and the backslash; everything else passes through as is.
    return '"' + _ESCAPE_RE.sub(lambda m: _SHORT_ESCAPES.get(m.group(), f"\\u{ord(m.group()):04X}"), text) + '"'


def _rapidjson_double(x: float) -> str:
    """A double as RapidJSON's Writer::Double prints it (Grisu + Prettify)."""
    if not math.isfinite(x):
        raise _WriterStop  # the writer rejects NaN/Inf without kWriteNanAndInfFlag
    if x == 0:
        return "-0.0" if math.copysign(1, x) < 0 else "0.0"
    # repr() gives the same shortest round-tripping digits as Grisu.
    _, digit_tuple, k = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    n = len(digits)
    kk = n + k  # 10^(kk-1) <= |x| < 10^kk
    if k >= 0 and kk <= 21:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        text = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        text = "0." + "0" * -kk + digits
    elif n == 1:
        text = f"{digits}e{kk - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return ("-" if x < 0 else "") + text


_NON_FINITE = {"nan": "NaN", "-nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def decimals(values: np.ndarray, fmt_digits: int, np_type) -> list[str]:
    """TF Serving's WriteDecimal for a float array: %g, else max_digits10 (`fmt_digits`)."""
    flat = values.ravel()
    as_double = flat.astype(np.float64).tolist()
    # %-formatting: about 30% faster than f-strings here, the hottest loop of a response.
    out = ["%g" % x for x in as_double]
    if out:
        # Which six-digit forms do not read back as the same value? (float()
        # then a cast to the output's type, all at C speed.)
        with np.errstate(all="ignore"):
            reparsed = np.array([float(t) for t in out]).astype(np_type)
        for i in np.flatnonzero(np.isfinite(flat) & (reparsed != flat)).tolist():
            out[i] = "%.*g" % (fmt_digits, as_double[i])
    # Whole numbers get ".0"; NaN and infinities are RapidJSON's tokens.
    return [t if ("." in t or "e" in t) else _NON_FINITE.get(t, t + ".0") for t in out]


def _write_value(w: Writer, value) -> None:
    """A parsed JSON value through the writer."""
    if value is None:
        w.raw("null")
    elif value is True or value is False:
        w.raw("true" if value else "false")
    elif type(value) is int:
        w.raw(str(value))
    elif type(value) is float:
        w.double(value)
    elif type(value) is str:
        w.string(value)
    elif type(value) is list:
        w.start(True)
        for item in value:
            _write_value(w, item)
        w.end()
    else:
        w.start(False)
        for k, v in value.items():
            w.key(k)
            _write_value(w, v)
        w.end()


def debug_string(value) -> str:
    """A parsed JSON value as TF Serving quotes it in error messages (truncated)."""
    w = Writer(limit=_DEBUG_LIMIT)
    w.single_line = True
    with contextlib.suppress(_WriterStop):
        _write_value(w, value)
    return w.text()
