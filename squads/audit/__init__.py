"""The tamper-evident audit log: every decision and execution, hash-chained."""
