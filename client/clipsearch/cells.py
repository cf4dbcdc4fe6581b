"""Catalog cells as shops write them, into typed values, and the schema a catalog implies.

Parsing is strict where guessing would bend data: ids are never parsed (they are strings,
byte for byte), a cell is parsed only by its field's type, and what does not fit is an
error naming the value, never a value of another type. The documented forms:

    integer    42, -7, +3                    (not 0042: a leading zero is a code, keep it a keyword)
    float      16.99, 1e3, $16.99, 16.99 USD, EUR 12, €12.50, 1,299.00, 1.299,00, 16,99 €
               (a comma followed by 3 digits alone, 1,299, is ambiguous and refused)
    boolean    true/false, yes/no, y/n, on/off, 1/0 (any case)
    keywords   a|b|c (the list separator, default "|"), or a JSON array ["a", "b"]
    keyword, text   the cell as written (surrounding blanks removed)

A currency on a float field must be the field's (``Field.currency``); symbols map to one
code ($ USD, € EUR, £ GBP, ¥ JPY) and ISO codes are accepted before or after the number.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from clipsearch.schema import Field, FieldType, Schema, Value

SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "₩": "KRW"}
_CODE = r"[A-Z]{3}"
_MONEY = re.compile(
    r"^(?P<sign1>[+-]?)\s*(?:(?P<pre_symbol>[$€£¥₹₩])|(?P<pre_code>" + _CODE + r")\s)?\s*(?P<sign2>[+-]?)"
    r"(?P<number>\d[\d.,\s']*)\s*(?:(?P<post_symbol>[$€£¥₹₩])|(?P<post_code>" + _CODE + r"))?$"
)
_INTEGER = re.compile(r"^[+-]?(0|[1-9]\d*)$")
_PLAIN_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)$")
_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}
#: Column names that are not metadata fields.
RESERVED = ("id", "image", "images")


class CellError(ValueError):
    """A cell that does not fit its field; the message names the value and what was expected."""


@dataclass(frozen=True)
class Number:
    value: float
    currency: str = ""  # "" when the cell had none


def parse_cell(field: Field, text: str, *, list_separator: str = "|") -> Value:
    """The typed value of a text cell for ``field``; :class:`CellError` if it does not fit."""
    kind = field.type
    if kind == FieldType.KEYWORDS:
        return parse_list(text, list_separator)
    cell = text.strip()
    if kind in (FieldType.KEYWORD, FieldType.TEXT):
        return cell
    if kind == FieldType.BOOLEAN:
        lowered = cell.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise CellError(f"{cell!r} is not a boolean (true/false, yes/no, 1/0)")
    number = parse_number(cell)
    if number.currency and field.currency and number.currency != field.currency:
        raise CellError(f"{cell!r} is in {number.currency}, but {field.name!r} holds {field.currency}")
    if number.currency and not field.currency:
        raise CellError(f"{cell!r} has a currency, but {field.name!r} declares none (set its currency)")
    if kind == FieldType.INTEGER:
        if not number.value.is_integer():
            raise CellError(f"{cell!r} is not a whole number")
        return int(number.value)
    return number.value


def parse_number(cell: str) -> Number:
    """A number, with the currency it is written in, if any; :class:`CellError` otherwise."""
    if _INTEGER.match(cell):
        return Number(float(int(cell)))
    if _PLAIN_FLOAT.match(cell):
        return _finite(float(cell), cell)
    match = _MONEY.match(cell)
    if match is None:
        raise CellError(f"{cell!r} is not a number")
    parts = match.groupdict()
    symbol = parts["pre_symbol"] or parts["post_symbol"]
    code = parts["pre_code"] or parts["post_code"] or ""
    marks = [
        m for m in (parts["pre_symbol"], parts["post_symbol"], parts["pre_code"], parts["post_code"]) if m
    ]
    if len({SYMBOLS.get(m, m) for m in marks}) > 1 or len(marks) > 2:
        raise CellError(f"{cell!r} names two currencies")
    currency = SYMBOLS.get(symbol, "") if symbol else code
    signs = (parts["sign1"] or "") + (parts["sign2"] or "")
    if len(signs) > 1:
        raise CellError(f"{cell!r} is not a number")
    value = _digits(parts["number"].strip(), cell)
    return _finite(-value if signs == "-" else value, cell, currency)


def _digits(text: str, cell: str) -> float:
    """Grouped digits with one decimal mark: 1,299.00 / 1.299,00 / 1 299,5 / 16,99 / 16.99."""
    compact = text.replace(" ", "").replace("'", "")
    commas, dots = compact.count(","), compact.count(".")
    if commas and dots:
        decimal = "," if compact.rfind(",") > compact.rfind(".") else "."
    elif commas == 1 and re.fullmatch(r"\d+,\d{1,2}", compact):
        decimal = ","  # 16,99: two digits after a comma are decimals (groups have three)
    elif commas:
        if re.fullmatch(r"\d{1,3}(,\d{3})+", compact):
            raise CellError(f"{cell!r} is ambiguous (1,299 is 1299 in some shops and 1.299 in others)")
        raise CellError(f"{cell!r} is not a number")
    elif dots > 1:
        decimal = ","  # 1.299.000: dots group thousands
    else:
        decimal = "."
    group = "." if decimal == "," else ","
    integer, _, fraction = compact.partition(decimal)
    if not re.fullmatch(r"\d{1,3}(" + re.escape(group) + r"\d{3})*|\d+", integer):
        raise CellError(f"{cell!r} is not a number (its digits are not grouped by three)")
    if fraction and not fraction.isdigit():
        raise CellError(f"{cell!r} is not a number")
    return float(integer.replace(group, "") + ("." + fraction if fraction else ""))


def _finite(value: float, cell: str, currency: str = "") -> Number:
    if not math.isfinite(value):
        raise CellError(f"{cell!r} is not a finite number")
    return Number(value, currency)


def parse_list(text: str, separator: str = "|") -> list[str]:
    """``a|b|c`` or a JSON array of strings; empty entries are dropped."""
    cell = text.strip()
    if cell.startswith("["):
        try:
            values = json.loads(cell)
        except json.JSONDecodeError:
            raise CellError(f"{cell!r} looks like a JSON array but is not one") from None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise CellError(f"{cell!r}: a list holds strings")
        return [v.strip() for v in values if v.strip()]
    return [part.strip() for part in cell.split(separator) if part.strip()]


# -- inference ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inferred:
    """A field inferred from a column, and why it is not a number when most of its values are."""

    field: Field
    note: str = ""


def infer_schema(columns: Mapping[str, Iterable[str]], *, list_separator: str = "|") -> dict[str, Inferred]:
    """The fields of a catalog's columns (text cells; empty cells ignored), with notes for people."""
    return {
        name: infer_field(name, [c for c in cells if c.strip()], list_separator=list_separator)
        for name, cells in columns.items()
        if name not in RESERVED
    }


def infer_field(name: str, cells: list[str], *, list_separator: str = "|") -> Inferred:
    """The narrowest type every cell fits; strings that repeat are keywords, prose is text."""
    if not cells:
        return Inferred(Field(name, FieldType.KEYWORD, case_insensitive=True), "no values yet: keyword")
    stripped = [c.strip() for c in cells]
    lowered = {c.lower() for c in stripped}
    if lowered <= {"true", "false", "yes", "no", "y", "n", "on", "off"}:
        return Inferred(Field(name, FieldType.BOOLEAN))
    codes = [c for c in stripped if re.fullmatch(r"[+-]?0\d+", c)]
    if not codes and all(_INTEGER.match(c) for c in stripped):
        if lowered <= {"0", "1"}:
            return Inferred(
                Field(name, FieldType.INTEGER), "only 0 and 1: integer (declare boolean if meant)"
            )
        return Inferred(Field(name, FieldType.INTEGER))
    numbers, not_numbers = [], []
    for cell in stripped:
        try:
            numbers.append(parse_number(cell))
        except CellError:
            not_numbers.append(cell)
    currencies = {n.currency for n in numbers if n.currency}
    if not not_numbers and not codes and len(currencies) <= 1:
        if len(currencies) == 1 and any(not n.currency for n in numbers):
            return _keyword(
                name, stripped, f"{len(numbers)} numbers, some with {currencies.pop()} and some without"
            )
        return Inferred(Field(name, FieldType.FLOAT, currency=currencies.pop() if currencies else ""))
    if any(list_separator in c or c.startswith("[") for c in stripped):
        return Inferred(Field(name, FieldType.KEYWORDS, case_insensitive=True))
    note = ""
    if codes:
        note = f"values with leading zeros ({codes[0]!r}) are codes, not numbers"
    elif len(numbers) >= 0.5 * len(stripped):
        shown = ", ".join(repr(c) for c in not_numbers[:3])
        why = (
            f"not numbers: {shown}" if not_numbers else f"several currencies: {', '.join(sorted(currencies))}"
        )
        note = (
            f"{len(numbers)} of {len(stripped)} values are numbers ({why}); declare it float to refuse others"
        )
    return _keyword(name, stripped, note)


def _keyword(name: str, cells: list[str], note: str) -> Inferred:
    """Keyword for values that repeat or are short codes; text for prose that is mostly unique."""
    distinct = len(set(cells))
    prose = sum(1 for c in cells if " " in c) > len(cells) / 2
    long_ = sum(len(c) for c in cells) / len(cells) > 30
    if prose and (distinct > 0.5 * len(cells) or long_):
        return Inferred(Field(name, FieldType.TEXT), note)
    return Inferred(Field(name, FieldType.KEYWORD, case_insensitive=True), note)


def schema_of(inferred: Mapping[str, Inferred]) -> Schema:
    return Schema(tuple(i.field for i in inferred.values()))
