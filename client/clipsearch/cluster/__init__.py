"""The index on a Ray cluster: shard-group copies, the fan-out router and the gRPC ingress.

Ray is an optional extra (``pip install 'clipsearch[ray]'``); only :mod:`.router` imports
without it. See docs/scaling.md.
"""
