"""Training standards: courses, certifications, handling standards and compliance."""
