"""One router per resource: search (the box), consultations, info, pages."""
