"""Per-target sweep, knee selection, report and bundles."""
