"""``python -m simqa.evaluate calibrate PAIRS``: the min-score threshold (see ``levers``)."""

from simqa.evaluate.levers import main

main()
