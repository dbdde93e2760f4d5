"""The compliance audit log: who did what to which resource, when, from which request, and with
what outcome; append-only and hash-chained, in its own database (docs/audit.md)."""
