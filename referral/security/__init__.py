"""Security: passwords, TOTP, tokens, secret sealing and permissions."""
