"""Settings classes per environment and reference data (YAML) for Amanat."""
