"""Server-side plumbing shared by every clipsearch gRPC server.

Needs the server extras (grpcio-health-checking, grpcio-reflection); the SDK
never imports this package.
"""
