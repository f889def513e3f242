"""Looking at a table: the `vl show` review page (page, cards, html, with its CSS and JS)."""
