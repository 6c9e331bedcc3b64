"""Accounts: users, server-side sessions, API tokens, login."""
