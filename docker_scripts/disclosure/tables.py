"""ACRO checks of tabular exports (see check_tables in runner/disclosure.py)."""
