"""The squads that ship: one folder each, with its YAML, analyzers, parsers and slots (docs/squads.md)."""
