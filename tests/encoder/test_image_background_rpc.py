"""Over real gRPC: a transparent cut-out is embedded as the picture on the page's background."""

from __future__ import annotations

import image_variants as v
import numpy as np
import pytest
from encoder_rpc import embed, image

from clipsearch.apps.demo.catalog import make_products, render_cutout

pytestmark = pytest.mark.functional

CUTOUT = render_cutout(make_products(1, seed=7)[0])


def test_a_cutout_and_its_white_background_twin_give_the_same_vector(stub) -> None:
    inputs = [
        image(v.cutout_png(CUTOUT, v.BLACK)),
        image(v.cutout_png(CUTOUT, v.WHITE)),
        image(v.png(v.flatten(CUTOUT, v.WHITE))),
        image(v.png(v.flatten(CUTOUT, v.BLACK))),
    ]
    vectors, _ = embed(stub, inputs)
    black_under, white_under, white_twin, black_twin = vectors
    np.testing.assert_allclose(black_under, white_twin, atol=1e-6)
    np.testing.assert_allclose(white_under, white_twin, atol=1e-6)
    assert float(white_twin @ black_twin) < 0.999  # the twins differ: the test can tell


def test_the_background_is_a_setting(start_encoder) -> None:
    import grpc

    from clipsearch.v1 import encoder_pb2_grpc

    thread = start_encoder(image_background="black")
    assert "; background #000000" in thread.server.core.preprocessing
    with grpc.insecure_channel(thread.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        vectors, _ = embed(
            stub, [image(v.cutout_png(CUTOUT, v.WHITE)), image(v.png(v.flatten(CUTOUT, v.BLACK)))]
        )
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
