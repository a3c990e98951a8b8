"""Placeholder: the family is being added (issue 14)."""

EXTRACTORS: tuple = ()
