"""Is pretraining healthy: per-step totals (losses, perplexity, masked share, grad norm) and the monitor that
warns on collapse or vanished gradients."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

GRAD_NORM_RANGE = (0.5, 2.0)
"""Where the grad norm of a healthy wav2vec2 pretraining run stays (the reference README's advice)."""
VANISHED_GRAD_NORM = 1e-8
"""Below this the model has collapsed (transformers#14387 reports ~1e-19 with a contrastive loss of 0)."""


@dataclass
class StepTotals:
    """Sums over micro-batches (and, after :meth:`reduce`, over processes) for logging."""

    loss: float = 0.0
    contrastive_loss: float = 0.0
    diversity_loss: float = 0.0
    perplexity: float = 0.0
    micro_batches: float = 0.0
    masked_frames: float = 0.0
    frames: float = 0.0
    audio_seconds: float = 0.0
    grad_norm: float = 0.0
    optimizer_steps: float = 0.0

    FIELDS = ("loss", "contrastive_loss", "diversity_loss", "perplexity", "micro_batches", "masked_frames", "frames",
              "audio_seconds", "grad_norm", "optimizer_steps")

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([getattr(self, name) for name in self.FIELDS], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> StepTotals:
        return cls(**dict(zip(cls.FIELDS, values.tolist(), strict=True)))

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Per-masked-frame losses, mean perplexity and grad norm, % of frames masked."""
        masked = max(self.masked_frames, 1.0)
        out = {
            "loss": self.loss / masked,
            "contrastive_loss": self.contrastive_loss / masked,
            "diversity_loss": self.diversity_loss / masked,
            "perplexity": self.perplexity / max(self.micro_batches, 1.0),
            "masked_pct": 100.0 * self.masked_frames / max(self.frames, 1.0),
        }
        if self.optimizer_steps:
            out["grad_norm"] = self.grad_norm / self.optimizer_steps
        return {f"{prefix}{key}": value for key, value in out.items()}


# ---------------------------------------------------------------------------------------------- health


@dataclass
class HealthMonitor:
    """Warns when the grad norm stays outside 0.5..2 for ``patience`` steps, or the codebook collapses.

    A collapsed quantizer uses about one code per group (perplexity near ``num_groups``), the contrastive loss falls
    to 0 and the grad norm vanishes (transformers#14387). Each warning is given once per episode.
    """

    num_groups: int
    num_codevectors: int
    patience: int = 100
    grad_norm_range: tuple[float, float] = GRAD_NORM_RANGE
    _outside: int = 0
    _warned: set[str] = field(default_factory=set)

    @property
    def collapse_perplexity(self) -> float:
        return 2.0 * self.num_groups

    def check(self, step: int, grad_norm: float, perplexity: float) -> list[str]:
        """Feed one optimizer step; returns the warnings to log (empty when healthy or already warned)."""
        messages = []
        low, high = self.grad_norm_range
        self._outside = self._outside + 1 if not (low <= grad_norm <= high) else 0
        if self._outside >= self.patience:
            if "grad_norm" not in self._warned:
                self._warned.add("grad_norm")
                messages.append(
                    f"step {step}: grad norm has been outside {low}..{high} for {self._outside} steps (now "
                    f"{grad_norm:.3g}). Pretraining is unstable outside this range: tune --learning_rate, "
                    "--num_warmup_steps, the batch size, or set --max_grad_norm."
                )
        else:
            self._warned.discard("grad_norm")
        vanished = math.isfinite(grad_norm) and grad_norm < VANISHED_GRAD_NORM
        collapsed = perplexity < self.collapse_perplexity or vanished
        if collapsed and "collapse" not in self._warned:
            self._warned.add("collapse")
            messages.append(
                f"step {step}: the quantizer looks collapsed (codevector perplexity {perplexity:.3g} of "
                f"{self.num_codevectors} codes, grad norm {grad_norm:.3g}). Lower --learning_rate, raise "
                "--num_warmup_steps or the diversity_loss_weight in config.json, or restart from a checkpoint."
            )
        elif not collapsed:
            self._warned.discard("collapse")
        return messages
