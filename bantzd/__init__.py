"""bantzd: an overnight job supervisor with a durable, file-based queue."""

__version__ = "0.1.0"
