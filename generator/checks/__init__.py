"""Keel's structural rules for services, each returning human-readable problems."""
