"""Parsers that turn diagnostic command output into typed records."""
