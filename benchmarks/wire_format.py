"""Packed float32 bytes vs `repeated float` for vectors on the wire, side by side.

Times the full path a vector takes in Python: numpy -> message -> serialized bytes
-> parsed message -> numpy, for a batch of vectors (an EmbedResponse or an Upsert
of N vectors). The `repeated float` variant is built at run time from a
descriptor, so both variants use the same protobuf runtime (upb) in one process.

    python benchmarks/wire_format.py [--dim 512] [--batch 64] [--repeat 200]
"""

from __future__ import annotations

import argparse
import platform
import time

import google.protobuf
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from clipsearch.v1 import types_pb2


def repeated_float_classes():
    """`message FloatVector { repeated float values = 1; }` and a batch of them."""
    file = descriptor_pb2.FileDescriptorProto(name="bench_wire.proto", package="bench", syntax="proto3")
    vector = file.message_type.add(name="FloatVector")
    vector.field.add(
        name="values", number=1, type=2, label=3
    )  # TYPE_FLOAT, LABEL_REPEATED (packed in proto3)
    batch = file.message_type.add(name="FloatBatch")
    batch.field.add(name="vectors", number=1, type=11, label=3, type_name=".bench.FloatVector")
    packed = file.message_type.add(name="PackedBatch")
    packed.field.add(name="vectors", number=1, type=11, label=3, type_name=".clipsearch.v1.Vector")
    file.dependency.append("clipsearch/v1/types.proto")
    pool = descriptor_pool.Default()
    pool.Add(file)
    classes = message_factory.GetMessages([file], pool=pool)
    return classes["bench.FloatBatch"], classes["bench.PackedBatch"]


def time_per_call(fn, repeat: int) -> float:
    fn()  # warm
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    FloatBatch, PackedBatch = repeated_float_classes()
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((args.batch, args.dim)).astype(np.float32)

    def encode_repeated() -> bytes:
        return FloatBatch(vectors=[{"values": row.tolist()} for row in matrix]).SerializeToString()

    def encode_packed() -> bytes:
        return PackedBatch(
            vectors=[types_pb2.Vector(float32_le=row.tobytes()) for row in matrix]
        ).SerializeToString()

    wire_repeated, wire_packed = encode_repeated(), encode_packed()

    def decode_repeated() -> np.ndarray:
        message = FloatBatch.FromString(wire_repeated)
        return np.array([list(v.values) for v in message.vectors], dtype=np.float32)

    def decode_packed() -> np.ndarray:
        message = PackedBatch.FromString(wire_packed)
        return np.stack([np.frombuffer(v.float32_le, dtype="<f4") for v in message.vectors])

    np.testing.assert_array_equal(decode_repeated(), matrix)
    np.testing.assert_array_equal(decode_packed(), matrix)

    rows = []
    for name, rep, pack in (
        ("encode", encode_repeated, encode_packed),
        ("decode", decode_repeated, decode_packed),
    ):
        t_rep, t_pack = time_per_call(rep, args.repeat), time_per_call(pack, args.repeat)
        rows.append((name, t_rep * 1e6, t_pack * 1e6, t_rep / t_pack))
    print(
        f"# {args.batch} vectors x {args.dim}-d float32; protobuf {google.protobuf.__version__} "
        f"({google.protobuf.internal.api_implementation.Type()}), Python {platform.python_version()}, "
        f"{platform.machine()}"
    )
    print(f"wire bytes: repeated float {len(wire_repeated)}, packed bytes {len(wire_packed)}")
    print(f"{'step':<8} {'repeated float us':>18} {'packed bytes us':>16} {'speed-up':>9}")
    for name, rep_us, pack_us, ratio in rows:
        print(f"{name:<8} {rep_us:>18.1f} {pack_us:>16.1f} {ratio:>8.1f}x")
    total = (rows[0][1] + rows[1][1]) / (rows[0][2] + rows[1][2])
    print(f"round trip speed-up of packed bytes: {total:.1f}x")


if __name__ == "__main__":
    main()
