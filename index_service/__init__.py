"""The clipsearch index service: sharded FAISS collections behind string ids.

The core (:mod:`.engine`, :mod:`.collection`, :mod:`.shard`, :mod:`.store`, :mod:`.filters`,
:mod:`.snapshots`) knows nothing of gRPC; :mod:`.servicer` adapts it to ``clipsearch.v1``
and :mod:`.server` runs it. See docs/index.md.
"""
