"""Support services: the provider directory, consent, service referrals."""
