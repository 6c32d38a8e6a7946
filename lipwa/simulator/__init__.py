"""Lipwa's provider simulator: Daraja and MTN MoMo, faithful to the wire, with faults."""
