"""Kuaxin (跨信) command-line entry point; the work lives in ``features``, ``training`` and
``serving``.
"""

__version__ = "0.1.0"
