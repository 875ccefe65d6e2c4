"""Data stage: read interaction data, filter it and split it leave-one-out (see `load_interactions`)."""

from ._io import DataFormatError
from .amazon import read_amazon
from .download import ChecksumMismatchError, DownloadError, download_dataset
from .filtering import kcore_filter
from .interactions import InteractionData
from .loading import load_interactions
from .movielens import read_movielens
from .recbole import read_recbole_atomic
from .splits import leave_one_out

__all__ = [
    "ChecksumMismatchError",
    "DataFormatError",
    "DownloadError",
    "InteractionData",
    "download_dataset",
    "kcore_filter",
    "leave_one_out",
    "load_interactions",
    "read_amazon",
    "read_movielens",
    "read_recbole_atomic",
]
