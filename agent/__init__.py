"""Edge agent of the loaned remote intrusion-detection camera."""

__version__ = "0.1.0"
