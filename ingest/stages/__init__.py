"""The stages `ingest run` applies to every converted episode (base.py: the contract; chain.py: the
registry and a section's chain); the toolkit sources call is ingest/convert/."""
