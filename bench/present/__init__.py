"""Presentation: sentences, terminal tables, number formatting and the HTML report, made from records and analyses."""
