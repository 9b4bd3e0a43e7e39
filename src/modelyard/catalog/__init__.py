"""The catalog: collections of records, what models inferred about them, and search over both."""
