"""Evaluation on recorded footage (eval, scoring) and the demo recording: not part of the unit's runtime."""
