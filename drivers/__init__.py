"""Hardware and file drivers: cameras and GPIO, each behind one interface."""
