"""Oversight: audit search, disclosures, break-glass, anomalies, de-identified statistics."""
