"""Inventory API: route handlers over an in-memory item store."""
