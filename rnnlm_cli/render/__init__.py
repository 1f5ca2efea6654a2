"""Rendering results: tables, CSV, JSON-safe values, charts, plots."""
