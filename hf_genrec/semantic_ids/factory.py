"""One factory by name: `build_id_scheme("rqkmeans", n_levels=3, codebook_size=256)` gives the unfitted scheme.

The command line and the recipes name a scheme with a string; this maps that string and plain keyword settings onto
the scheme's class, so callers need not know which class takes which setting.
"""

from __future__ import annotations

from .base import ItemIDScheme
from .baselines import AtomicIDs, RandomIDs
from .hierarchical import HierarchicalKMeans
from .rqkmeans import RQKMeans
from .rqvae import RQVAE
from .title import TitleIDs

#: every scheme `build_id_scheme` builds, by name
ID_SCHEMES = ("rqvae", "rqkmeans", "hierarchical", "title", "random", "atomic")
#: schemes that read item features (title reads titles, random and atomic read nothing)
FEATURE_SCHEMES = ("rqvae", "rqkmeans", "hierarchical")


def build_id_scheme(
    name: str,
    *,
    n_levels: int = 3,
    codebook_size: int = 256,
    seed: int = 0,
    pca_dim: int | None = 32,
    balanced: bool = False,
    epochs: int = 100,
    tokenizer=None,
    max_tokens: int = 16,
    vocab_size: int = 8000,
    missing_titles: str = "error",
) -> ItemIDScheme:
    """The unfitted ID scheme called ``name``; a setting the scheme does not use is ignored.

    Args:
        name (`str`): one of `ID_SCHEMES`: ``"rqvae"`` (TIGER's RQ-VAE), ``"rqkmeans"`` (residual k-means),
            ``"hierarchical"`` (recursive k-means), ``"title"`` (title tokens), ``"random"`` (random codes) or
            ``"atomic"`` (one token per item).
        n_levels (`int`): code levels before the collision level (rqvae, rqkmeans, hierarchical, random).
        codebook_size (`int`): codes per level; hierarchical: clusters per node.
        seed (`int`): the scheme's seed (rqvae, rqkmeans, hierarchical, random).
        pca_dim (`int`, *optional*): rqkmeans and hierarchical: project the features on this many principal axes
            first; `None` keeps them whole.
        balanced (`bool`): rqkmeans: equal-size clusters at every level.
        epochs (`int`): rqvae: training epochs of the autoencoder.
        tokenizer: title: the tokenizer to spell titles with (`None`: learn one on the titles).
        max_tokens (`int`): title: pieces of the title kept per ID.
        vocab_size (`int`): title: pieces learnt on the titles when no ``tokenizer`` is given.
        missing_titles (`str`): title: ``"error"`` on items without a title, or ``"item_id"`` to spell them by id.

    Example:
        ```python
        >>> from hf_genrec.semantic_ids.factory import build_id_scheme
        >>> build_id_scheme("rqkmeans", n_levels=3, codebook_size=64, pca_dim=None).n_levels
        3
        ```
    """
    if name == "rqvae":
        return RQVAE(n_levels=n_levels, codebook_size=codebook_size, seed=seed, epochs=epochs)
    if name == "rqkmeans":
        return RQKMeans(n_levels=n_levels, codebook_size=codebook_size, seed=seed, balanced=balanced, pca_dim=pca_dim)
    if name == "hierarchical":
        return HierarchicalKMeans(n_levels=n_levels, codebook_size=codebook_size, seed=seed, pca_dim=pca_dim)
    if name == "title":
        return TitleIDs(
            tokenizer=tokenizer, max_tokens=max_tokens, vocab_size=vocab_size, missing_titles=missing_titles
        )
    if name == "random":
        return RandomIDs(n_levels=n_levels, codebook_size=codebook_size, seed=seed)
    if name == "atomic":
        return AtomicIDs()
    raise ValueError(f"Unknown id_scheme {name!r}; choose one of {', '.join(ID_SCHEMES)}.")
