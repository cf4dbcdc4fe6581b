import numpy as np
import pytest

from clipsearch.errors import InvalidArgumentError
from clipsearch.v1 import types_pb2
from clipsearch.wire import (
    metadata_from_proto,
    metadata_to_proto,
    vector_from_proto,
    vector_to_proto,
    vectors_from_protos,
    vectors_to_protos,
)

pytestmark = pytest.mark.unit


def test_vectors_round_trip_bit_exact() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((5, 7)).astype(np.float32)
    protos = vectors_to_protos(matrix)
    assert all(len(p.float32_le) == 7 * 4 for p in protos)
    np.testing.assert_array_equal(vectors_from_protos(protos), matrix)
    np.testing.assert_array_equal(vector_from_proto(vector_to_proto(matrix[2])), matrix[2])


def test_packed_format_is_little_endian_float32() -> None:
    assert vector_to_proto([1.0]).float32_le == b"\x00\x00\x80\x3f"


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00"])
def test_bad_vector_bytes_name_the_field(data: bytes) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        vectors_from_protos([vector_to_proto([1.0]), types_pb2.Vector(float32_le=data)], field="queries")
    assert caught.value.field == "queries[1]"


def test_mixed_dimensions_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="different dimensions"):
        vectors_from_protos([vector_to_proto([1.0]), vector_to_proto([1.0, 2.0])])


def test_metadata_round_trip_keeps_types() -> None:
    metadata = {"title": "Red dress", "price": 19.5, "stock": 3, "sale": False, "big": 2**60}
    back = metadata_from_proto(metadata_to_proto(metadata))
    assert back == {"title": "Red dress", "price": 19.5, "stock": 3, "sale": False, "big": float(2**60)}
    assert isinstance(back["stock"], int) and isinstance(back["sale"], bool)


def test_unsupported_metadata_type_names_the_key() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        metadata_to_proto({"dimensions": {"w": 3}})
    assert caught.value.field == "metadata.dimensions"
    with pytest.raises(InvalidArgumentError):
        metadata_to_proto({"tags": ["a", 3]})  # lists hold strings only
