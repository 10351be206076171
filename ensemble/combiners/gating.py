"""Learned gating: a small network picks per-example weights over the experts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigError, InvalidLogitsError
from ._checks import check_choice, check_positive_ints, check_rate
from ._design import modality_dropout, stacking_blocks
from ._inputs import LogitsLike, MaskLike
from ._torch_linear import fit_along_Cs, fit_torch_linear
from .base import PREDICT_CHUNK_ROWS, Combiner, FusionData
from .registry import register_combiner

__all__ = ["GatingCombiner"]

_FUSIONS = ("stacked", "mixture", "logits")
_FEATURE_WIDTH = 4
_MIN_GATE_VALIDATION_ROWS = 50
_WARM_START_CS = (0.01, 0.1, 1.0, 10.0)
_STACKED_LR_SHARE = 0.1


class _GateNet(nn.Module):
    """Per-expert summaries ``[N, M, C + 2]`` + ``[N, M]`` mask -> ``[N, M]`` masked softmax
    weights (the summaries come from :func:`_expert_summaries`).

    With ``stacked`` it also holds the classwise stacking layer the weights modulate:
    ``scale [M, C]`` (each expert's weight on each class), ``bias [C]`` and
    ``missing_bias [M, C]`` (a class shift per absent expert)."""

    def __init__(self, n_experts: int, n_classes: int, hidden: int, *,
                 stacked: bool = False, feature_dims: Sequence[int] = ()) -> None:
        super().__init__()
        head = nn.Linear(hidden, n_experts)
        nn.init.zeros_(head.weight)  # start from equal weights (= soft voting), then learn
        nn.init.zeros_(head.bias)
        width = n_experts * (n_classes + 3) + len(feature_dims) * _FEATURE_WIDTH
        self.body = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), head)
        # Each expert's standardised pre-logit features, projected to a few numbers: what
        # the input looked like to that expert, which its logits may not show.
        self.projections = nn.ModuleList(nn.Linear(d, _FEATURE_WIDTH) for d in feature_dims)
        for j, dim in enumerate(feature_dims):
            self.register_buffer(f"feature_mean_{j}", torch.zeros(dim))
            self.register_buffer(f"feature_scale_{j}", torch.ones(dim))
        self.stacked = stacked
        if stacked:
            self.scale = nn.Parameter(torch.ones(n_experts, n_classes))
            self.bias = nn.Parameter(torch.zeros(n_classes))
            self.missing_bias = nn.Parameter(torch.zeros(n_experts, n_classes))

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """The gate at ``lr``; the stacking layer (already fitted) at a tenth of it."""
        groups: list[dict[str, Any]] = [{"params": [*self.body.parameters(),
                                                     *self.projections.parameters()],
                                         "lr": lr}]
        if self.stacked:
            groups.append({"params": [self.scale, self.bias, self.missing_bias],
                           "lr": lr * _STACKED_LR_SHARE})
        return groups

    def standardise(self, features: Sequence[np.ndarray]) -> None:
        """Set the feature standardisation from the fit rows' features."""
        for j, array in enumerate(features):
            values = torch.as_tensor(np.asarray(array, dtype=np.float32))
            getattr(self, f"feature_mean_{j}").copy_(values.mean(0))
            getattr(self, f"feature_scale_{j}").copy_(values.std(0).clamp_min(1e-6))

    def forward(self, summaries: torch.Tensor, mask: torch.Tensor,
                features: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        present = mask.to(summaries.dtype).unsqueeze(-1)
        inputs = [torch.cat([summaries * present, present], dim=-1).flatten(1)]
        for j, (projection, array) in enumerate(zip(self.projections, features, strict=True)):
            scaled = (array - getattr(self, f"feature_mean_{j}")) / getattr(
                self, f"feature_scale_{j}")
            inputs.append(projection(scaled) * present[:, j])
        scores = self.body(torch.cat(inputs, dim=1)).masked_fill(~mask, float("-inf"))
        none = ~mask.any(dim=1, keepdim=True)
        return torch.softmax(scores.masked_fill(none, 0.0), dim=1)


def _expert_summaries(log_probs: torch.Tensor) -> torch.Tensor:
    """``[N, M, C + 2]``: each expert's log-probabilities, entropy and top-2 margin."""
    probs = log_probs.exp()
    ent = -(probs * log_probs).sum(-1, keepdim=True)
    top1, where = probs.max(dim=-1, keepdim=True)
    top2 = probs.scatter(-1, where, 0.0).amax(dim=-1, keepdim=True)  # faster than topk(2)
    return torch.cat([log_probs, ent, top1 - top2], dim=-1)


def _fuse(weights: torch.Tensor, log_probs: torch.Tensor, fusion: str,
          net: _GateNet, mask: torch.Tensor) -> torch.Tensor:
    """Fused log-probabilities; ``log_probs`` may also be ``[N, M, 1]`` true-class columns
    for the mixture (its NLL needs nothing else)."""
    if fusion == "stacked":
        # Per-example factors over the experts present, 1 each where the gate is neutral.
        present = mask.to(weights.dtype)
        factors = weights * present.sum(dim=1, keepdim=True)
        scores = (torch.einsum("nm,nmc->nc", factors, log_probs * net.scale) + net.bias
                  + (1.0 - present) @ net.missing_bias)
        return torch.log_softmax(scores, dim=1)
    if fusion == "logits":
        return torch.log_softmax(torch.einsum("nm,nmc->nc", weights, log_probs), dim=1)
    return torch.logsumexp(torch.log(weights.clamp_min(1e-30)).unsqueeze(-1) + log_probs, dim=1)


def _nll(weights: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor,
         fusion: str, net: _GateNet, mask: torch.Tensor) -> torch.Tensor:
    """Mean NLL; ``targets`` is ``[N, M, 1]`` (mixture) or ``[N, M, C]`` (otherwise)."""
    fused = _fuse(weights, targets, fusion, net, mask)
    if fusion == "mixture":
        return -fused.mean()
    return nn.functional.nll_loss(fused, labels)


class _GatingModule(nn.Module):
    """:meth:`GatingCombiner._log_proba` as a module (see :mod:`.graph`)."""

    def __init__(self, gate: _GateNet, fusion: str) -> None:
        super().__init__()
        self.gate = gate
        self.fusion = fusion

    def forward(self, log_probs: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor,
                features: list[torch.Tensor]) -> torch.Tensor:
        weights = self.gate(_expert_summaries(log_probs), mask,
                            features if len(self.gate.projections) else ())
        return _fuse(weights, log_probs, self.fusion, self.gate, mask)


@register_combiner("gating")
class GatingCombiner(Combiner):
    """Per-example softmax weights over experts from a small MLP (a mixture of experts).

    The gate reads each expert's log-probabilities, entropy, top-2 margin and presence bit,
    and (``read_features``, when the logits carry them) each expert's standardised
    pre-logit features projected to a few numbers: what the input looked like to that
    expert, which its logits may not show. Absent experts get weight exactly zero (masked
    softmax). ``fusion="stacked"`` (default): the weights, times the number of experts
    present, scale each expert's block of a classwise stacking layer that starts at
    classwise stacking fitted on the gate's training rows (the gate starts neutral, the
    layer learns at a tenth of ``lr``), so early stopping keeps plain stacking when
    per-example weights add nothing; with fewer than 50 internal validation rows the gate
    is not trained at all (it could not be checked) and the classwise stacking layer is
    refitted on every row. ``"mixture"`` mixes probabilities,
    ``"logits"`` mixes log-probabilities. Trained with Adam on NLL, weight
    decay, modality dropout and early stopping on an internal ``validation_fraction``
    split. Runs on ``device`` (default: the device accelerate picks).
    :meth:`gate_weights` shows which expert decided each example.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 300)
        >>> logits = {"image": 3 * np.eye(3)[y] + rng.normal(size=(300, 3)),
        ...           "text": rng.normal(size=(300, 3))}
        >>> gate = GatingCombiner(max_epochs=20).fit(logits, y)
        >>> gate.gate_weights(logits).shape  # [N, M], columns follow gate.expert_names_
        (300, 2)
    """

    _predict_chunk_rows = PREDICT_CHUNK_ROWS

    def __init__(
        self,
        *,
        hidden: int = 32,
        fusion: Literal["stacked", "mixture", "logits"] = "stacked",
        read_features: bool = True,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        modality_dropout: float = 0.2,
        max_epochs: int = 100,
        batch_size: int = 1024,
        patience: int = 5,
        max_rows: int | None = 20_000,
        validation_fraction: float = 0.2,
        device: str | None = None,
        calibrate: bool = False,
        pattern_guard: bool = True,
        random_state: int | None = 0,
    ) -> None:
        self.hidden = hidden
        self.fusion = fusion
        self.read_features = read_features
        self.lr = lr
        self.weight_decay = weight_decay
        self.modality_dropout = modality_dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.max_rows = max_rows
        self.validation_fraction = validation_fraction
        self.device = device
        self.calibrate = calibrate
        self.pattern_guard = pattern_guard
        self.random_state = random_state

    def _check_params(self) -> None:
        check_choice("fusion", self.fusion, _FUSIONS)
        check_positive_ints(self, ("hidden", "max_epochs", "batch_size", "patience"))
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}.")
        check_rate("modality_dropout", self.modality_dropout)
        check_rate("validation_fraction", self.validation_fraction)
        if self.max_rows is not None and (not isinstance(self.max_rows, int)
                                          or self.max_rows < 2):
            raise ConfigError(f"max_rows must be None or an integer >= 2, got {self.max_rows!r}.")

    def _torch_device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        from accelerate import PartialState

        return PartialState().device

    def _tensors(self, data: FusionData) -> tuple[torch.Tensor, torch.Tensor]:
        device = self._torch_device()
        return (torch.from_numpy(data.log_probs).to(device),
                torch.from_numpy(np.asarray(data.mask)).to(device))

    # -- training ---------------------------------------------------------------------------

    def _fit(self, data: FusionData, y: np.ndarray) -> None:
        seed = 0 if self.random_state is None else int(self.random_state)
        generator = torch.Generator().manual_seed(seed)
        use_features = self.read_features and data.features is not None
        self.feature_dims_ = (tuple(int(a.shape[1]) for a in data.features)
                              if use_features and data.features is not None else None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _GateNet(len(self.expert_names_), self.n_classes_, self.hidden,
                           stacked=self.fusion == "stacked", feature_dims=self.feature_dims_ or ())
        rows = np.arange(data.n_rows)
        if self.max_rows is not None and data.n_rows > self.max_rows:
            rows = np.sort(np.random.default_rng(seed).choice(data.n_rows, self.max_rows,
                                                               replace=False))
        features: list[torch.Tensor] = []
        if self.feature_dims_ is not None and data.features is not None:
            net.standardise([a[data.mask[:, j]] if data.mask[:, j].any() else a
                             for j, a in enumerate(data.features)])
            features = [torch.from_numpy(np.asarray(a[rows], dtype=np.float32))
                        for a in data.features]
        device = self._torch_device()
        net.to(device)
        features = [f.to(device) for f in features]
        labels = torch.as_tensor(y[rows], device=device)
        log_probs = torch.from_numpy(data.log_probs[rows]).to(device)
        mask = torch.from_numpy(np.asarray(data.mask[rows])).to(device)
        with torch.no_grad():
            summaries = _expert_summaries(log_probs)
            targets = (log_probs if self.fusion != "mixture" else log_probs.gather(
                2, labels.view(-1, 1, 1).expand(-1, log_probs.shape[1], 1)).contiguous())
        del log_probs
        order = torch.randperm(rows.size, generator=generator).to(device)
        n_val = round(self.validation_fraction * rows.size)
        if rows.size - n_val < 1:
            n_val = 0
        val, train = order[:n_val], order[n_val:]
        # A per-example gate that too few held-out rows can check is not trained: the
        # stacked fusion keeps its warm start (classwise stacking), then refitted on every
        # row, since no row is needed to check a gate.
        trains_gate = not (net.stacked and n_val < _MIN_GATE_VALIDATION_ROWS)
        if net.stacked:
            self._warm_start(net, data, y, rows[train.cpu().numpy()], rows[val.cpu().numpy()],
                             seed, refit=None if trains_gate else rows)
        optimiser = torch.optim.AdamW(net.parameter_groups(self.lr), lr=self.lr,
                                      weight_decay=self.weight_decay)

        def validation_loss() -> float:
            if n_val == 0:
                return float("inf")
            net.eval()
            with torch.inference_mode():
                weights = net(summaries[val], mask[val], [f[val] for f in features])
                return float(_nll(weights, targets[val], labels[val], self.fusion, net,
                                  mask[val]))

        best = (validation_loss(), {k: v.clone() for k, v in net.state_dict().items()})
        stale, self.n_epochs_ = 0, 0
        epochs = self.max_epochs if trains_gate else 0
        for _ in range(epochs):
            self.n_epochs_ += 1
            net.train()
            shuffled = train[torch.randperm(train.numel(), generator=generator).to(device)]
            for batch in shuffled.split(self.batch_size):
                dropped = self._dropped(mask[batch], generator)
                weights = net(summaries[batch], dropped, [f[batch] for f in features])
                loss = _nll(weights, targets[batch], labels[batch], self.fusion, net, dropped)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            if n_val == 0:
                continue
            val_loss = validation_loss()
            if val_loss < best[0] - 1e-4:
                best, stale = (val_loss, {k: v.clone() for k, v in net.state_dict().items()}), 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if n_val:
            net.load_state_dict(best[1])
        self.validation_nll_ = best[0] if n_val else None
        self.gate_ = net.eval()

    def _stacking_design(self, data: FusionData, y: np.ndarray, rows: np.ndarray, seed: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Classwise stacking's blocks, scalars and labels for ``rows``, with the rows that
        modality dropout reduces appended."""
        mask = data.mask[rows]
        changed, reduced = modality_dropout(mask, self.modality_dropout,
                                            np.random.default_rng(seed))
        log_probs = data.log_probs[rows]
        parts = [stacking_blocks(log_probs, mask, ["log_proba"]),
                 stacking_blocks(log_probs[changed], reduced, ["log_proba"])]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                np.concatenate([y[rows], y[rows][changed]]))

    def _warm_start(self, net: _GateNet, data: FusionData, y: np.ndarray, rows: np.ndarray,
                    held_out: np.ndarray, seed: int, *, refit: np.ndarray | None = None
                    ) -> None:
        """Start the stacked fusion at classwise stacking fitted on the gate's training
        rows (with modality dropout), its ``C`` the one of ``_WARM_START_CS`` with the lowest
        NLL on the gate's validation rows (``held_out``), so the gate only has to learn
        what per-example weights add; early stopping keeps the start when they add
        nothing. ``refit``: rows to refit that ``C`` on (all of them, when no gate will be
        trained)."""
        *design, labels = self._stacking_design(data, y, rows, seed)
        check = stacking_blocks(data.log_probs[held_out], data.mask[held_out], ["log_proba"])
        C, model = fit_along_Cs("classwise", *design, labels, _WARM_START_CS,
                                (*check, y[held_out]), n_classes=self.n_classes_)
        if refit is not None:
            *design, labels = self._stacking_design(data, y, refit, seed)
            model = fit_torch_linear("classwise", *design, labels, C,
                                     n_classes=self.n_classes_, init=model)
        device = net.scale.device
        with torch.no_grad():
            net.scale.copy_(torch.from_numpy(model.block_coef).to(device))
            net.missing_bias.copy_(torch.from_numpy(model.scalar_coef).to(device))
            net.bias.copy_(torch.from_numpy(model.intercept).to(device))

    def _dropped(self, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.modality_dropout <= 0:
            return mask
        keep = torch.rand(mask.shape, generator=generator).to(mask.device) >= self.modality_dropout
        reduced = mask & keep
        emptied = ~reduced.any(dim=1, keepdim=True)
        return torch.where(emptied, mask, reduced)

    # -- prediction -------------------------------------------------------------------------

    def _weights_tensor(self, data: FusionData
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        log_probs, mask = self._tensors(data)
        self.gate_.to(log_probs.device)
        features: list[torch.Tensor] = []
        if self.feature_dims_ is not None:
            if data.features is None:
                raise InvalidLogitsError(
                    "this gating combiner was fitted on the experts' features and needs them "
                    "to predict: build the LogitSet with LogitSet.from_experts(..., "
                    "features=True) or pass features={expert: [N, D]}."
                )
            features = [torch.from_numpy(np.asarray(a, dtype=np.float32)).to(log_probs.device)
                        for a in data.features]
        with torch.inference_mode():
            weights = self.gate_(_expert_summaries(log_probs), mask, features)
        return weights, log_probs, mask

    def _log_proba(self, data: FusionData) -> np.ndarray:
        weights, log_probs, mask = self._weights_tensor(data)
        with torch.inference_mode():
            return _fuse(weights, log_probs, self.fusion, self.gate_,
                         mask).cpu().numpy()

    def fusion_module(self) -> nn.Module:
        return _GatingModule(self.gate_, self.fusion)

    def reads_features(self) -> bool:
        return self.feature_dims_ is not None

    def explain_weights(self, logits: LogitsLike, *, mask: MaskLike = None
                        ) -> tuple[np.ndarray, tuple[str, ...], str] | None:
        """Per-example gate weights over the experts."""
        return self.gate_weights(logits, mask=mask), tuple(self.expert_names_), "gate"

    def gate_weights(self, logits: LogitsLike, *, mask: MaskLike = None) -> np.ndarray:
        """Per-example expert weights ``[N, M]`` (columns follow ``expert_names_``; rows sum to 1
        over present experts, absent experts get 0)."""
        logit_set = self._validated_set(logits, mask)
        chunks = [self._weights_tensor(self._prepare(logit_set, slice(start, start + size)))[0]
                  for size in [self._predict_chunk_rows or logit_set.n_rows]
                  for start in range(0, logit_set.n_rows, size)]
        return torch.cat(chunks).cpu().numpy().astype(np.float64)

    # -- persistence ------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"gate.{k}": v.detach().cpu().numpy() for k, v in self.gate_.state_dict().items()}
        return arrays, {"n_epochs": self.n_epochs_, "validation_nll": self.validation_nll_,
                        "feature_dims": (None if self.feature_dims_ is None
                                         else list(self.feature_dims_))}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any],
                 directory: Any) -> None:
        dims = state.get("feature_dims")
        self.feature_dims_ = None if dims is None else tuple(int(d) for d in dims)
        net = _GateNet(len(self.expert_names_), self.n_classes_, self.hidden,
                       stacked=self.fusion == "stacked", feature_dims=self.feature_dims_ or ())
        tensors = {k[len("gate."):]: torch.as_tensor(v) for k, v in arrays.items()
                   if k.startswith("gate.")}
        try:
            net.load_state_dict(tensors)
        except RuntimeError as err:
            raise ValueError(f"gate weights do not fit the network: {err}") from err
        self.gate_ = net.eval()
        self.n_epochs_ = int(state["n_epochs"])
        self.validation_nll_ = state["validation_nll"]

