"""The Similar Q&A box: hits, Related FAQ topics and the verifier's flags, built once and
rendered as text, JSON, Markdown or HTML; every box of an index; duplicate questions."""
