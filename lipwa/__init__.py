"""Lipwa: a self-hosted mobile money gateway for M-Pesa (Daraja) and MTN MoMo."""

__version__ = "0.1.0"
