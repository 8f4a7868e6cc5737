"""Evidence a court can check: the unit's signing key, signed media manifests and the hash-chained audit log."""
