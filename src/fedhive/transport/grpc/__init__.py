"""The gRPC transport: the only place fedhive imports ``grpc``."""
