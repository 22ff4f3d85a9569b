"""Data in: readers, preprocessing, catalogue, cache, splits (owned by the data work)."""
