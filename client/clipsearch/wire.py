"""Conversions between ``clipsearch.v1`` messages and Python / numpy values.

Shared by the SDK and both servers so the wire format is defined in one place:
vectors are packed little-endian float32 (see protos/clipsearch/v1/types.proto),
metadata values are str, float/int, bool or a list of str (a keywords field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np

from clipsearch.errors import InvalidArgumentError
from clipsearch.schema import Field, FieldType, Schema
from clipsearch.v1 import index_pb2, types_pb2

MetadataScalar = str | int | float | bool
#: A metadata value: a scalar, or a list of strings (the value of a keywords field).
MetadataValue = MetadataScalar | list[str]
_LE_FLOAT32 = np.dtype("<f4")


def vector_to_proto(vector: np.ndarray | Sequence[float]) -> types_pb2.Vector:
    array = np.asarray(vector, dtype=_LE_FLOAT32)
    if array.ndim != 1:
        raise InvalidArgumentError(f"a vector must be 1-d, got shape {array.shape}", field="vector")
    return types_pb2.Vector(float32_le=array.tobytes())


def vectors_to_protos(matrix: np.ndarray) -> list[types_pb2.Vector]:
    """Rows of a 2-d array, one message each."""
    rows = np.ascontiguousarray(matrix, dtype=_LE_FLOAT32)
    if rows.ndim != 2:
        raise InvalidArgumentError(
            f"expected a 2-d array of vectors, got shape {rows.shape}", field="vectors"
        )
    return [types_pb2.Vector(float32_le=row.tobytes()) for row in rows]


def vector_from_proto(message: types_pb2.Vector, *, field: str = "vector") -> np.ndarray:
    """Decodes one vector; INVALID_ARGUMENT naming ``field`` if the bytes are not float32s."""
    data = message.float32_le
    if len(data) == 0 or len(data) % 4:
        raise InvalidArgumentError(
            f"{field}: expected a non-empty multiple of 4 bytes of float32, got {len(data)} bytes",
            field=field,
        )
    return np.frombuffer(data, dtype=_LE_FLOAT32).astype(np.float32, copy=False)


def vectors_from_protos(messages: Sequence[types_pb2.Vector], *, field: str = "vectors") -> np.ndarray:
    """Decodes vectors of one dimension into an (n, d) float32 array."""
    if not messages:
        return np.zeros((0, 0), dtype=np.float32)
    rows = [vector_from_proto(m, field=f"{field}[{i}]") for i, m in enumerate(messages)]
    dims = {row.shape[0] for row in rows}
    if len(dims) != 1:
        raise InvalidArgumentError(f"{field}: vectors have different dimensions {sorted(dims)}", field=field)
    return np.stack(rows).astype(np.float32, copy=False)


def metadata_value_to_proto(value: MetadataValue, *, field: str = "metadata") -> types_pb2.MetadataValue:
    # bool first: it is a subclass of int.
    if isinstance(value, (bool, np.bool_)):
        return types_pb2.MetadataValue(bool_value=bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return types_pb2.MetadataValue(number_value=float(value))
    if isinstance(value, str):
        return types_pb2.MetadataValue(string_value=value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return types_pb2.MetadataValue(string_list_value=types_pb2.StringList(values=list(value)))
    raise InvalidArgumentError(
        f"{field}: metadata values must be str, number, bool or a list of str, got {type(value).__name__}",
        field=field,
    )


def metadata_value_from_proto(message: types_pb2.MetadataValue) -> MetadataValue | None:
    kind = message.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "string_list_value":
        return list(message.string_list_value.values)
    value = getattr(message, kind)
    if kind == "number_value" and float(value).is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def metadata_to_proto(metadata: Mapping[str, MetadataValue]) -> dict[str, types_pb2.MetadataValue]:
    return {key: metadata_value_to_proto(value, field=f"metadata.{key}") for key, value in metadata.items()}


def metadata_from_proto(metadata: Mapping[str, types_pb2.MetadataValue]) -> dict[str, MetadataValue]:
    result: dict[str, MetadataValue] = {}
    for key, message in metadata.items():
        value = metadata_value_from_proto(message)
        if value is not None:
            result[key] = value
    return result


_FIELD_TYPES: dict[FieldType, int] = {
    kind: index_pb2.FieldType.Value(f"FIELD_TYPE_{kind.name}") for kind in FieldType
}
_FIELD_TYPES_BY_NUMBER = {number: kind for kind, number in _FIELD_TYPES.items()}


def schema_to_proto(schema: Schema) -> index_pb2.Schema:
    return index_pb2.Schema(
        fields=[
            index_pb2.FieldSchema(
                name=f.name,
                type=cast(index_pb2.FieldType, _FIELD_TYPES[f.type]),
                case_insensitive=f.case_insensitive,
                currency=f.currency,
            )
            for f in schema.fields
        ]
    )


def fields_from_proto(fields: Sequence[index_pb2.FieldSchema], where: str = "schema.fields") -> list[Field]:
    """Checked fields; INVALID_ARGUMENT naming ``where[i]`` for an unknown type or a bad name."""
    result = []
    for i, message in enumerate(fields):
        kind = _FIELD_TYPES_BY_NUMBER.get(message.type)
        if kind is None:
            raise InvalidArgumentError(
                f"{where}[{i}].type: set a field type (keyword, text, integer, float, boolean, keywords)",
                field=f"{where}[{i}].type",
            )
        result.append(
            Field(message.name, kind, case_insensitive=message.case_insensitive, currency=message.currency)
        )
    return result


def schema_from_proto(message: index_pb2.Schema, where: str = "schema") -> Schema:
    return Schema(tuple(fields_from_proto(list(message.fields), f"{where}.fields")))
