"""Tools of the monitoring station and an engineer's laptop (monitor, command): not part of the unit's runtime."""
