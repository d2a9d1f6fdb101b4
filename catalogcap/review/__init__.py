"""Human review of captions: the Textual app, the spreadsheet round trip and review numbers.

`queue` reads what is left to review a page at a time, `decisions` writes decisions with
undo, `spreadsheet` exports and imports CSV, `stats` measures reviewing per adapter.
"""
