"""Channels: the transactional outbox, SMS and e-mail adapters, SMS intake (SPEC §9)."""
