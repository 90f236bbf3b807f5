"""simqa on Milvus: the same engine, with records and vectors in a Milvus collection.

``simqa build SOURCE --index NAME --milvus URI`` (``http://host:19530`` or a Milvus Lite
file ``./NAME.db``; ``simqa.build(..., milvus=URI)`` in Python) writes only a manifest
locally; ``simqa.open_index(NAME)`` then returns a ``MilvusIndex``, which answers the index
interface (``simqa.index.protocol``), so query, similar, serve and eval work as on the
embedded index.

``client`` (connection, bounded calls, one-line errors) -> ``schema`` (the row, filter
expressions) -> ``vectors`` (index types and tuning through ``VectorIndex``) -> ``folder``
(the local manifest) -> ``collection`` (builds: a new collection, then the switch) and
``rows`` (appends, updates, deletes, the undo journal) -> ``index`` (``MilvusIndex``);
``embedded`` starts a local Milvus standalone server for tests and benchmarks.
"""
