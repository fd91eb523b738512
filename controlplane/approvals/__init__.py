"""Approvals: a person decides an approval step (a gate) of a waiting run (issue 11)."""
