"""Pure detection on arrays: motion, tracking, tamper, panorama, fusion. No I/O, no clocks."""
