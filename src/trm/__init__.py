"""trm: Tiny Recursive Models (arXiv 2510.04871) for grid puzzles."""

__version__ = "0.1.0"
