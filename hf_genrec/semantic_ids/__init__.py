"""Semantic IDs: turn item features into short, unique tuples of codes (TIGER).

One class per scheme behind one interface: ``fit(features, item_ids) -> SemanticIDs``, ``encode(new_features)``,
``save_pretrained`` / ``from_pretrained``. Or bring your own codes with :func:`from_codes`.
"""

from ._io import load_quantizer
from .collisions import add_collision_level
from .diagnostics import compute_diagnostics
from .ids import SemanticIDs, from_codes
from .rqkmeans import RQKMeans
from .rqvae import RQVAE

__all__ = [
    "RQKMeans",
    "RQVAE",
    "SemanticIDs",
    "add_collision_level",
    "compute_diagnostics",
    "from_codes",
    "load_quantizer",
]
