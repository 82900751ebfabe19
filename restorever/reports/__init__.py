"""Results records, tables and figures. Figures only read results; they never compute metrics."""
