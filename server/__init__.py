"""Matte: a self-hosted background-removal server."""

__version__ = "0.1.0"
