"""The clipsearch encoder service: open_clip behind gRPC, with a dynamic batcher.

Importing this package is cheap (no torch): ``encoder_service.settings`` needs only the
standard library. The core (``model``, ``images``, ``batching``, ``core``) knows nothing
of gRPC; ``servicer`` and ``server`` adapt it.
"""
