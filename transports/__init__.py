"""I/O adapters for the smtp_proto engine, installed as ``smtp_proto.transports``."""
