"""``lipwa doctor``: is this configuration ready for production traffic?

One module per group of checks (config, keys, database, accounts and secrets, services,
online); each check returns ``Check`` values (pass / warn / fail, a detail and the fix).
"""

from lipwa.doctor.result import Check, Status

__all__ = ["Check", "Status"]
