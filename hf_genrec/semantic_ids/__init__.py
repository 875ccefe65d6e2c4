"""Semantic IDs: turn items into short, unique token spellings that similar items share prefixes of.

One class per scheme behind one interface (`ItemIDScheme`): ``fit(features, item_ids) -> SemanticIDs``,
``encode(new_features)``, ``save_pretrained`` / ``from_pretrained``. Or bring your own codes with :func:`from_codes`.
"""

from .base import SCHEMES, ItemIDScheme, load_quantizer
from .baselines import AtomicIDs, RandomIDs
from .collisions import add_collision_level
from .diagnostics import compute_diagnostics
from .factory import ID_SCHEMES, build_id_scheme
from .hierarchical import HierarchicalKMeans
from .ids import SemanticIDs, from_codes
from .rqkmeans import RQKMeans, balanced_assignment
from .rqvae import RQVAE
from .title import TitleIDs, train_title_tokenizer

__all__ = [
    "ID_SCHEMES",
    "SCHEMES",
    "AtomicIDs",
    "HierarchicalKMeans",
    "ItemIDScheme",
    "RQKMeans",
    "RQVAE",
    "RandomIDs",
    "SemanticIDs",
    "TitleIDs",
    "add_collision_level",
    "balanced_assignment",
    "build_id_scheme",
    "compute_diagnostics",
    "from_codes",
    "load_quantizer",
    "train_title_tokenizer",
]
