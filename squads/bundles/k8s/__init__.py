"""The k8s squad's bundle: its YAML, analyzers and slot vocabulary."""
