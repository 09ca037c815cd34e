"""The node agent: connects out to the control plane and runs what both policies allow."""

__version__ = "0.1.0"
