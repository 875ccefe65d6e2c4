"""The version of hf_genrec, stamped into every bundle it writes."""

__version__ = "0.2.0.dev0"
