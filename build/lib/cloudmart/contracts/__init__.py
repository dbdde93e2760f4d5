"""The pydantic models that are the contract between the API, the workflow and the activities.

These modules are imported by workflow code, so they import nothing but pydantic and the
standard library: no database, no I/O.
"""
