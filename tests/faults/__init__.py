"""Fault-injection suite (issue 17): broker and agent killed, broker stalled; `make faults` runs the long version."""
