"""The security squad's bundle: its YAML, analyzers and slot vocabulary."""
