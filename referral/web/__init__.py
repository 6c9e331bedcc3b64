"""Server-rendered pages per audience."""
