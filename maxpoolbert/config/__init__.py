"""Layer 4, the configuration: the schema check, Lightning's flags, the allowlist and canonical names of ``_target_`` (imports core, tasks)."""
