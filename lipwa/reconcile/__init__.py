"""Reconciliation: provider statements against Lipwa's payments.

``statements`` parses the files, ``matcher`` sorts rows and payments into buckets (pure),
``service`` stores runs and settles what a statement proves, ``scheduled`` is the daily run.
"""
