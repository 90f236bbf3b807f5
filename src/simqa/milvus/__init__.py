"""simqa on Milvus: the same engine, with records and vectors in a Milvus collection.

``simqa build SOURCE --index NAME --milvus URI`` (``http://host:19530`` or a Milvus Lite
file ``./NAME.db``) writes only a manifest locally; ``Index.open(NAME)`` then returns a
``MilvusIndex`` with the ``Index`` interface, so query, similar, serve and eval work as on
the embedded index.

``client`` (connection, bounded calls, one-line errors) -> ``schema`` (the row, filter
expressions) -> ``vectors`` (index types and tuning through ``VectorIndex``) -> ``write``
(builds, appends, deletes, the undo journal) -> ``index`` (``MilvusIndex``) -> ``command``
(what ``simqa build --milvus`` runs); ``embedded`` starts a local Milvus standalone server
for tests and benchmarks.
"""

from simqa.milvus.command import build_or_append
from simqa.milvus.index import MilvusIndex
from simqa.milvus.write import build, from_index, from_vectors, is_milvus_index

__all__ = [
    "MilvusIndex",
    "build",
    "build_or_append",
    "from_index",
    "from_vectors",
    "is_milvus_index",
]
