"""Reading input files: YAML with positions, validation into models, JSON Schemas."""
