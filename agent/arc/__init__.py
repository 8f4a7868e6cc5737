"""Reporting to the alarm receiving centre (ARC): SIA DC-09 signals and video-alarm emails, fed from the outbox."""
