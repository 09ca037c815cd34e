"""Text that is safe to store and to show: secret redaction and terminal-safe display.

A leaf package: it imports nothing of the project, so the audit log, transcripts, the brain
and every front end can use it without importing one another."""
