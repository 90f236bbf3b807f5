"""Training: fine-tuning the encoder on labelled pairs, the cross-encoder reranker, and
``simqa adapt``. Never imported by the query path."""
