"""A collection's schema: its metadata fields and their types, and the checks that use it.

    keyword    an exact string (category, brand, SKU); optionally case-insensitive in filters
    text       free text (title, description)
    integer    a whole number (|n| <= 2^53)
    float      a finite number; optionally the currency of every value ("USD")
    boolean    true or false
    keywords   a list of keywords (tags); filters match any element, or all with contains_all

The index checks every write and every filter against it; ingestion parses catalog cells
with it (:mod:`clipsearch.cells`). Values in Python: ``str`` for keyword and text, ``int``
(or an integral ``float``) for integer, ``float`` or ``int`` for float, ``bool``, and a
list of ``str`` for keywords. Pure Python: the index core uses it too.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clipsearch.errors import InvalidArgumentError

MAX_FIELD_NAME_BYTES = 128
MAX_SAFE_INTEGER = 2**53
#: The keys a schema file or dict may give a field.
_FIELD_KEYS = {"type", "case_insensitive", "currency"}

Value = str | int | float | bool | list[str]


class FieldType(enum.Enum):
    KEYWORD = "keyword"
    TEXT = "text"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    KEYWORDS = "keywords"

    @property
    def described(self) -> str:
        return _DESCRIBED[self]


_DESCRIBED = {
    FieldType.KEYWORD: "a string",
    FieldType.TEXT: "a string",
    FieldType.INTEGER: "a whole number",
    FieldType.FLOAT: "a number",
    FieldType.BOOLEAN: "true or false",
    FieldType.KEYWORDS: "a list of strings",
}


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    #: keyword and keywords: filters compare ignoring case (stored values keep their case).
    case_insensitive: bool = False
    #: float and integer fields holding money: the ISO 4217 code of every value.
    currency: str = ""

    def __post_init__(self) -> None:
        check_field_name(self.name, f"schema.{self.name}")
        if self.case_insensitive and self.type not in (FieldType.KEYWORD, FieldType.KEYWORDS):
            raise InvalidArgumentError(
                f"schema.{self.name}: case_insensitive applies to keyword and keywords fields, "
                f"not {self.type.value}",
                field=f"schema.{self.name}.case_insensitive",
            )
        if self.currency and (
            self.type not in (FieldType.FLOAT, FieldType.INTEGER) or not _is_currency(self.currency)
        ):
            raise InvalidArgumentError(
                f"schema.{self.name}: currency {self.currency!r} needs a float or integer field and a "
                "three-letter ISO 4217 code such as USD",
                field=f"schema.{self.name}.currency",
            )

    def describe(self) -> str:
        extra = [name for name, on in (("case-insensitive", self.case_insensitive),) if on]
        if self.currency:
            extra.append(self.currency)
        return self.type.value + (f" ({', '.join(extra)})" if extra else "")

    def check(self, value: Any, where: str) -> Value:
        """``value`` if it has this field's type (an int for integer fields), else INVALID_ARGUMENT."""
        kind = self.type
        if kind in (FieldType.KEYWORD, FieldType.TEXT):
            if isinstance(value, str):
                return value
        elif kind == FieldType.BOOLEAN:
            if isinstance(value, bool):
                return value
        elif kind in (FieldType.INTEGER, FieldType.FLOAT):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value):
                    raise InvalidArgumentError(f"{where}: numbers must be finite, got {value}", field=where)
                if kind == FieldType.FLOAT:
                    return value
                if float(value).is_integer() and abs(value) <= MAX_SAFE_INTEGER:
                    return int(value)
                raise InvalidArgumentError(
                    f"{where}: {self.name!r} is an integer field, got {value!r}", field=where
                )
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise InvalidArgumentError(
            f"{where}: {self.name!r} is a {kind.value} field ({kind.described}), got {_shown(value)}",
            field=where,
        )


@dataclass(frozen=True)
class Schema:
    fields: tuple[Field, ...] = ()
    _by_name: dict[str, Field] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(sorted(self.fields, key=lambda f: f.name)))  # one order
        seen: dict[str, Field] = {}
        for f in self.fields:
            if f.name in seen:
                raise InvalidArgumentError(
                    f"schema: field {f.name!r} is declared twice", field=f"schema.{f.name}"
                )
            seen[f.name] = f
        self._by_name.update(seen)

    def get(self, name: str) -> Field | None:
        return self._by_name.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def unknown_field(self, name: str, where: str) -> InvalidArgumentError:
        known = ", ".join(self.names) or "none"
        return InvalidArgumentError(
            f"{where}: unknown field {name!r}; the collection's fields are: {known} "
            "(add fields with AddFields / `clipsearch collections add-field`)",
            field=where,
        )

    def check_metadata(self, metadata: Mapping[str, Any], where: str) -> dict[str, Value]:
        """``metadata`` checked field by field; INVALID_ARGUMENT naming ``where.<field>``."""
        checked: dict[str, Value] = {}
        for name, value in metadata.items():
            declared = self._by_name.get(name)
            if declared is None:
                raise self.unknown_field(name, f"{where}.{name}")
            checked[name] = declared.check(value, f"{where}.{name}")
        return checked

    def with_fields(self, added: Iterable[Field]) -> Schema:
        """This schema plus ``added``; a field already here must come with the same declaration."""
        fields = dict(self._by_name)
        for new in added:
            old = fields.get(new.name)
            if old is not None and old != new:
                raise InvalidArgumentError(
                    f"fields.{new.name}: already {old.describe()}, cannot become {new.describe()}",
                    field=f"fields.{new.name}",
                )
            fields[new.name] = new
        return Schema(tuple(fields[name] for name in sorted(fields)))

    def folded(self) -> frozenset[str]:
        """Names of the fields whose filters ignore case."""
        return frozenset(f.name for f in self.fields if f.case_insensitive)

    # -- serialized forms ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{"price": {"type": "float", "currency": "USD"}, ...}``: the schema file format."""
        out: dict[str, dict[str, Any]] = {}
        for f in self.fields:
            entry: dict[str, Any] = {"type": f.type.value}
            if f.case_insensitive:
                entry["case_insensitive"] = True
            if f.currency:
                entry["currency"] = f.currency
            out[f.name] = entry
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "schema") -> Schema:
        """From the schema file format; a field may also be just its type name (``"tags": "keywords"``)."""
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"{where}: expected an object of fields", field=where)
        fields = []
        for name, spec in data.items():
            entry = {"type": spec} if isinstance(spec, str) else spec
            if not isinstance(entry, Mapping) or set(entry) - _FIELD_KEYS or "type" not in entry:
                raise InvalidArgumentError(
                    f"{where}.{name}: expected a type name or an object of {sorted(_FIELD_KEYS)}: {spec!r}",
                    field=f"{where}.{name}",
                )
            fields.append(
                Field(
                    name,
                    field_type(entry["type"], f"{where}.{name}.type"),
                    case_insensitive=bool(entry.get("case_insensitive", False)),
                    currency=str(entry.get("currency", "")).upper(),
                )
            )
        return cls(tuple(sorted(fields, key=lambda f: f.name)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        """One line per field, for people (``clipsearch collections describe``, ingest)."""
        width = max((len(f.name) for f in self.fields), default=0)
        return "\n".join(f"  {f.name:<{width}}  {f.describe()}" for f in self.fields)


def field_type(name: Any, where: str = "type") -> FieldType:
    try:
        return FieldType(str(name).lower())
    except ValueError:
        names = ", ".join(t.value for t in FieldType)
        raise InvalidArgumentError(
            f"{where}: unknown field type {name!r} (the types are {names})", field=where
        ) from None


def check_field_name(name: str, where: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError(f"{where}: field names must not be empty", field=where)
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FIELD_NAME_BYTES:
        raise InvalidArgumentError(
            f"{where}: field names are at most {MAX_FIELD_NAME_BYTES} bytes", field=where
        )


def infer_from_values(items: Sequence[Mapping[str, Any]], where: str = "items") -> Schema:
    """The schema a first write implies: each field's type from its values (all must agree).

    Numbers become float (the wire does not tell 3 from 3.0), strings keyword (exact).
    """
    found: dict[str, tuple[FieldType, str]] = {}
    for i, metadata in enumerate(items):
        for name, value in metadata.items():
            kind = _type_of(value, f"{where}[{i}].metadata.{name}")
            first = found.setdefault(name, (kind, f"{where}[{i}]"))
            if first[0] != kind:
                spot = f"{where}[{i}].metadata.{name}"
                raise InvalidArgumentError(
                    f"{spot}: {name!r} is {kind.described} here but {first[0].described} in {first[1]}; "
                    "one field has one type (declare the schema to say which)",
                    field=spot,
                )
    return Schema(tuple(Field(name, kind) for name, (kind, _) in sorted(found.items())))


def _type_of(value: Any, where: str) -> FieldType:
    if isinstance(value, bool):
        return FieldType.BOOLEAN
    if isinstance(value, str):
        return FieldType.KEYWORD
    if isinstance(value, (int, float)):
        return FieldType.FLOAT
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return FieldType.KEYWORDS
    raise InvalidArgumentError(f"{where}: expected a string, number, boolean or list of strings", field=where)


def _is_currency(code: str) -> bool:
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


def _shown(value: Any) -> str:
    kind = (
        "the string"
        if isinstance(value, str)
        else "the list"
        if isinstance(value, (list, tuple))
        else "the value"
    )
    text = repr(value)
    return f"{kind} {text[:60] + '...' if len(text) > 60 else text}"


__all__ = ["Field", "FieldType", "Schema", "Value", "field_type", "infer_from_values"]
