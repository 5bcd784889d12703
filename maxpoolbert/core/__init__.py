"""Layer 1, the foundations: errors, value types, signatures, metrics, atomic file IO (imports no other layer)."""
