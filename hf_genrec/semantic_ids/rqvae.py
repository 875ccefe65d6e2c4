"""TIGER's residual-quantised VAE (RQ-VAE) in torch, with the usual fixes against codebook collapse."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..utils.progress import progress_bar
from ._validation import (
    check_codebook_sizes,
    check_codes,
    check_collision_option,
    check_enough_items,
    check_features,
    check_item_ids,
)
from .base import ItemIDScheme
from .ids import SemanticIDs, build_semantic_ids
from .rqkmeans import check_distinct, nearest_centroid, train_kmeans

logger = logging.getLogger(__name__)


def _mlp(dims: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _thin(history: list[dict], n: int) -> list[dict]:
    """About ``n`` evenly spaced entries of ``history``, always with the last one."""
    kept = history[:: max(1, len(history) // n)]
    return kept if kept[-1] is history[-1] else [*kept, history[-1]]


class RQVAEModule(nn.Module):
    """Encoder MLP -> residual quantiser (one codebook per level) -> mirrored decoder MLP."""

    def __init__(
        self,
        input_dim: int,
        hidden_dims: list[int],
        latent_dim: int,
        codebook_sizes: list[int],
        beta: float = 0.25,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.beta = beta
        self.encoder = _mlp([input_dim, *hidden_dims, latent_dim], dropout)
        self.decoder = _mlp([latent_dim, *reversed(hidden_dims), input_dim], dropout)
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.randn(size, latent_dim) / math.sqrt(latent_dim)) for size in codebook_sizes]
        )
        self.register_buffer("feature_mean", torch.zeros(input_dim))
        self.register_buffer("feature_std", torch.ones(input_dim))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.feature_mean) / self.feature_std

    @staticmethod
    def nearest(residual: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        distances = (codebook * codebook).sum(dim=1)[None, :] - 2.0 * residual @ codebook.T
        return distances.argmin(dim=1)

    def quantize(self, z: torch.Tensor):
        """Returns (sum of chosen code vectors, codes [B, L], quantisation loss, residual entering each level)."""
        residual = z
        quantized = torch.zeros_like(z)
        codes, residuals = [], []
        loss = z.new_zeros(())
        for codebook in self.codebooks:
            residuals.append(residual)
            index = self.nearest(residual.detach(), codebook.detach())
            # one-hot matmul, not codebook[index]: the backward of indexing accumulates in a thread-dependent order on
            # CPU (runs with >1 thread differ by ~1e-8 and then drift apart); a matmul's backward is reproducible
            chosen = F.one_hot(index, codebook.shape[0]).to(codebook.dtype) @ codebook
            # codebook loss moves codes towards residuals; commitment (beta) keeps the encoder near its codes
            loss = loss + F.mse_loss(chosen, residual.detach()) + self.beta * F.mse_loss(residual, chosen.detach())
            quantized = quantized + chosen
            residual = residual - chosen.detach()
            codes.append(index)
        return quantized, torch.stack(codes, dim=1), loss, residuals

    def forward(self, x: torch.Tensor):
        target = self.standardize(x)
        z = self.encoder(target)
        quantized, codes, quant_loss, residuals = self.quantize(z)
        z_q = z + (quantized - z).detach()  # straight-through estimator
        reconstruction = self.decoder(z_q)
        recon_loss = F.mse_loss(reconstruction, target)
        return {
            "loss": recon_loss + quant_loss,
            "recon_loss": recon_loss,
            "quant_loss": quant_loss,
            "codes": codes,
            "residuals": residuals,
        }

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _, codes, _, _ = self.quantize(self.encoder(self.standardize(x)))
        return codes


class RQVAE(ItemIDScheme):
    """TIGER's RQ-VAE semantic IDs (Rajput et al., 2023): an MLP autoencoder whose latent is residual-quantised.

    Against codebook collapse: inputs are standardised per dimension; each codebook starts from k-means (faiss) on
    the residuals of all items' initial latents; codes unused for ``reset_dead_codes_every`` steps are re-seeded from
    random residuals of the current batch (not during the last 10% of steps, so the final codebooks settle).

    Args:
        n_levels, codebook_size: residual levels and codes per level (int or one per level).
        latent_dim, hidden_dims: encoder ``input_dim -> hidden_dims -> latent_dim``; the decoder mirrors it.
        beta: commitment weight. epochs, batch_size, lr, weight_decay: Adam training.
        kmeans_init, kmeans_init_iters: k-means initialisation of the codebooks.
        reset_dead_codes_every: steps between dead-code resets (``0``/``None`` turns resets off).
        standardize: standardise input features (mean 0, std 1 per dimension) before the encoder.
        seed: the same seed, input and device give the same codes.
        add_collision_level: ``True`` (TIGER), ``None``/``"auto"`` (only when needed) or ``False``.
        device: ``"cpu"``, ``"cuda"``, ...; default: CUDA when available.
    """

    scheme = "rqvae"
    _config_keys = (
        "n_levels",
        "codebook_size",
        "latent_dim",
        "hidden_dims",
        "beta",
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "dropout",
        "kmeans_init",
        "kmeans_init_iters",
        "reset_dead_codes_every",
        "standardize",
        "seed",
        "add_collision_level",
    )

    def __init__(
        self,
        n_levels: int = 3,
        codebook_size: int | list[int] = 256,
        latent_dim: int = 32,
        hidden_dims: tuple[int, ...] | list[int] = (512, 256, 128),
        beta: float = 0.25,
        epochs: int = 100,
        batch_size: int = 1024,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        kmeans_init: bool = True,
        kmeans_init_iters: int = 20,
        reset_dead_codes_every: int | None = 20,
        standardize: bool = True,
        seed: int = 0,
        add_collision_level: bool | str | None = True,
        device: str | torch.device | None = None,
    ):
        self.codebook_size = check_codebook_sizes(codebook_size, n_levels)
        self.n_levels = int(n_levels)
        self.latent_dim = int(latent_dim)
        self.hidden_dims = [int(h) for h in hidden_dims]
        self.beta = float(beta)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.dropout = float(dropout)
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_init_iters = int(kmeans_init_iters)
        self.reset_dead_codes_every = int(reset_dead_codes_every or 0)
        self.standardize = bool(standardize)
        self.seed = int(seed)
        self.add_collision_level = check_collision_option(add_collision_level)
        self.device = torch.device(device) if device is not None else None
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"epochs, batch_size and lr must be positive (got {epochs}, {batch_size}, {lr}).")
        self.model_: RQVAEModule | None = None

    @property
    def codebook_sizes(self) -> list[int]:
        return self.codebook_size

    def _device(self) -> torch.device:
        if self.device is not None:
            return self.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def _build(self, input_dim: int) -> RQVAEModule:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return RQVAEModule(
                input_dim, self.hidden_dims, self.latent_dim, self.codebook_sizes, beta=self.beta, dropout=self.dropout
            )

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def _init_codebooks(self, model: RQVAEModule, x: torch.Tensor) -> None:
        """k-means (k-means++ start) of each level's residuals of all items' initial latents."""
        model.eval()
        residual = torch.cat([model.encoder(model.standardize(chunk)) for chunk in x.split(8192)])
        residual = np.ascontiguousarray(residual.float().cpu().numpy())
        for level, codebook in enumerate(model.codebooks):
            centroids = train_kmeans(
                residual, codebook.shape[0], n_iter=self.kmeans_init_iters, seed=self.seed + level
            )
            codebook.copy_(torch.from_numpy(centroids).to(codebook.device))
            residual = residual - centroids[nearest_centroid(residual, centroids)]

    @torch.no_grad()
    def _reset_dead_codes(self, model, counts, residuals, generator, optimizer) -> list[int]:
        reset = []
        for level, codebook in enumerate(model.codebooks):
            dead = torch.nonzero(counts[level] == 0).flatten()
            reset.append(int(len(dead)))
            if len(dead) == 0:
                continue
            pool = residuals[level].detach()
            pick = torch.randint(len(pool), (len(dead),), generator=generator).to(pool.device)
            noise = torch.randn(len(dead), pool.shape[1], generator=generator).to(pool.device)
            scale = pool.std(dim=0, keepdim=True, correction=0).clamp_min(1e-6) * 0.01
            dead = dead.to(codebook.device)
            codebook[dead] = pool[pick] + noise * scale
            state = optimizer.state.get(codebook, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][dead] = 0.0
        return reset

    def fit(self, features, item_ids) -> SemanticIDs:
        """Train the RQ-VAE on ``features`` [n_items, dim] and return every item's semantic IDs."""
        start = time.perf_counter()
        features = check_features(features)
        item_ids = check_item_ids(item_ids, len(features))
        check_enough_items(len(features), self.codebook_sizes)
        check_distinct(features, self.codebook_sizes)
        device = self._device()
        n_items, input_dim = features.shape
        model = self._build(input_dim).to(device)
        x = torch.from_numpy(features).to(device)
        if self.standardize:
            model.feature_mean.copy_(x.mean(dim=0))
            std = x.std(dim=0)
            model.feature_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))
        if self.kmeans_init:
            self._init_codebooks(model, x)

        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        batch_size = min(self.batch_size, n_items)
        steps_per_epoch = math.ceil(n_items / batch_size)
        total_steps = steps_per_epoch * self.epochs
        last_reset_step = int(0.9 * total_steps)
        counts = [torch.zeros(size, dtype=torch.long, device=device) for size in self.codebook_sizes]
        resets = [0] * self.n_levels
        step = 0
        history = []
        model.train()
        bar = progress_bar(range(self.epochs), desc="RQ-VAE", unit="epoch")
        for epoch in bar:
            order = torch.randperm(n_items, generator=generator).to(device)
            sums = torch.zeros(3, dtype=torch.float64)
            for batch in order.split(batch_size):
                out = model(x[batch])
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                optimizer.step()
                step += 1
                for level in range(self.n_levels):
                    counts[level] += torch.bincount(out["codes"][:, level], minlength=self.codebook_sizes[level])
                sums += torch.tensor(
                    [out["loss"].item(), out["recon_loss"].item(), out["quant_loss"].item()], dtype=torch.float64
                ) * len(batch)
                if self.reset_dead_codes_every and step % self.reset_dead_codes_every == 0:
                    if step <= last_reset_step:
                        reset = self._reset_dead_codes(model, counts, out["residuals"], generator, optimizer)
                        resets = [a + b for a, b in zip(resets, reset)]
                    for level_counts in counts:
                        level_counts.zero_()
            loss, recon, quant = (sums / n_items).tolist()
            history.append({"epoch": epoch + 1, "loss": loss, "recon_loss": recon, "quant_loss": quant})
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if (epoch + 1) % max(1, self.epochs // 10) == 0 or epoch + 1 == self.epochs:
                message = "RQ-VAE epoch %d/%d: loss %.4f (reconstruction %.4f, quantisation %.4f)"
                logger.info(message, epoch + 1, self.epochs, loss, recon, quant)
        model.eval()
        self.model_ = model
        train_seconds = time.perf_counter() - start
        codes = self.encode(features)
        with torch.no_grad():
            recon_all = sum(float(model(chunk)["recon_loss"]) * len(chunk) for chunk in x.split(8192)) / n_items
        semantic_ids = build_semantic_ids(
            codes,
            item_ids,
            scheme=self.scheme,
            codebook_sizes=self.codebook_sizes,
            add_collision_level=self.add_collision_level,
            extra_diagnostics={
                "fit_seconds": time.perf_counter() - start,
                "quantizer": {
                    "scheme": self.scheme,
                    "device": str(device),
                    "epochs": self.epochs,
                    "steps": step,
                    "train_seconds": train_seconds,
                    "final_recon_loss": recon_all,
                    "last_epoch": history[-1],
                    "dead_code_resets_per_level": resets,
                    "loss_history": _thin(history, 20),
                },
            },
        )
        for stats in semantic_ids.diagnostics["levels"][: self.n_levels]:
            if stats["usage"] < 0.5:
                logger.warning(
                    "RQ-VAE level %d uses only %.1f%% of its %d codes (codebook collapse). Try more epochs, a "
                    "smaller codebook_size, or RQKMeans.",
                    stats["level"],
                    100 * stats["usage"],
                    stats["codebook_size"],
                )
        return semantic_ids

    def encode(self, features, batch_size: int = 8192) -> np.ndarray:
        """Codes ``int64 [n, n_levels]`` (without the collision level) of items given their features."""
        if self.model_ is None:
            raise ValueError("This RQVAE is not fitted; call fit(features, item_ids) or from_pretrained() first.")
        x = check_features(features)
        input_dim = self.model_.feature_mean.shape[0]
        if x.shape[1] != input_dim:
            raise ValueError(f"features have dim {x.shape[1]} but this RQVAE was fitted on dim {input_dim}.")
        device = self.model_.feature_mean.device
        self.model_.eval()
        out = [
            self.model_.encode(torch.from_numpy(chunk).to(device)).cpu()
            for chunk in np.array_split(x, max(1, math.ceil(len(x) / batch_size)))
        ]
        return torch.cat(out).numpy().astype(np.int64)

    def decode(self, codes) -> np.ndarray:
        """The features ``float32 [n, input_dim]`` that ``codes`` (int ``[n, n_levels]``, no collision level) stand
        for: the decoder's reconstruction from the sum of their code vectors, in the scale of the features fitted on."""
        self._require_fitted()
        codes = torch.from_numpy(check_codes(codes, self.codebook_sizes)).to(self.model_.feature_mean.device)
        self.model_.eval()
        with torch.no_grad():
            latent = sum(codebook[codes[:, level]] for level, codebook in enumerate(self.model_.codebooks))
            out = self.model_.decoder(latent) * self.model_.feature_std + self.model_.feature_mean
        return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)

    # ------------------------------------------------------------------ files
    def _extra_config(self) -> dict:
        return {"input_dim": None if self.model_ is None else int(self.model_.feature_mean.shape[0])}

    @classmethod
    def _extra_keys(cls) -> tuple[str, ...]:
        return ("input_dim",)

    def _state(self) -> dict[str, np.ndarray]:
        if self.model_ is None:
            return {}
        return {key: value.detach().cpu().contiguous().numpy() for key, value in self.model_.state_dict().items()}

    def _load_state(self, tensors: dict[str, np.ndarray], config: dict) -> None:
        model = self._build(int(config["input_dim"]))
        model.load_state_dict({key: torch.from_numpy(value) for key, value in tensors.items()})
        self.model_ = model.to(self._device()).eval()
