"""Referrals (cases): submission, sealed storage, reading, workflow."""
