"""The tamper-evident audit log: every access, a hash chain, signed checkpoints."""
