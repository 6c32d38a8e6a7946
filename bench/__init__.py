"""Benchmarks of the Lipwa simulator and gateway (see bench/README.md).

Every server and load generator runs in its own process; nothing here talks to anything but
127.0.0.1 (and the local PostgreSQL server).
"""
