"""The gateway: clipsearch.v1.SearchService, the composed calls as one gRPC service."""
