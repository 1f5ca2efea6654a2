"""Data: tokenising, vocabulary, prepared-data folders, batching, synthetic corpora."""
