"""EI-Forge tests."""
