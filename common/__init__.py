"""Below every other package: the root exception, the one clock, the settings base and small shared helpers.

Imports nothing of ours, so drivers/, models/ and agent/ can all stand on it.
"""
