"""Vector backends behind one interface; see ``base.VectorIndex``."""

from simqa.vectors.base import VectorIndex
from simqa.vectors.factory import choose, create, load

__all__ = ["VectorIndex", "choose", "create", "load"]
