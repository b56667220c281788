"""Dream's original remote code, importable as a package by make_fixtures.py (see the file headers)."""
