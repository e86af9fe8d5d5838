"""The data contract as pydantic models. Imports nothing else of ours."""
