"""Data files shipped with simqa: simqa adapt's default training pairs (see README.md here)."""
