"""Fine-tune any TransformerBridge on labelled statements or a raw token stream, saving a resumable
`Trajectory` of checkpoints.

On statements the model learns to answer each one: the next token after its last real token is the
true or the false answer (``answers``), by the row's label, optionally plus a next-token loss over the
statement itself (tiny models learn faster with it). On a `TokenStream` it learns the next token
everywhere (continued pre-training). AdamW with linear warmup and linear decay to
zero; checkpoints at log-spaced steps (0, 1, 2, 4, … then evenly spaced), each saved atomically with
the optimizer state, so a killed run resumes from its last checkpoint and reaches the same weights.
With ``lora`` (`elk_lens.lora.LoraConfig`) only low-rank adapters on the blocks' projections train;
each checkpoint is then the merged model, its adapters saved beside it (``docs/methods/lora.md``).

The training state a rerun resumes from is safetensors + JSON (``elk_lens._state``), never a pickle: a
directory holding only the old pickled state (``.train_state.pt``) is refused, not loaded.
"""

import hashlib
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from elk_lens._atomic import atomic_write_bytes
from elk_lens._checks import check_labels, check_number
from elk_lens._hooks import loud_hooks
from elk_lens._progress import progress_bar
from elk_lens._state import read_state, refuse_pickle, write_state
from elk_lens.capturing import Tokens, capture, tokenize
from elk_lens.data.statements import StatementSet
from elk_lens.lm_output import answer_token_ids
from elk_lens.lora import Lora, LoraConfig, lora_record
from elk_lens.reporters import Reporter
from elk_lens.token_stream import TokenStream, window_loss
from elk_lens.trajectory import Checkpoint, Trajectory

__all__ = ["Anchor", "FineTuneConfig", "anchor_to", "answer_loss", "checkpoint_steps", "fine_tune"]

STATE_FILE = ".train_state.json"  # its tensors lie beside it, in .train_state.<digest>.safetensors
OLD_STATE_FILE = ".train_state.pt"  # the pickled state earlier versions wrote: never read
_STATE_KEYS = ("model", "opt", "rng", "torch_rng", "step", "history", "done", "config", "data", "anchor")


def checkpoint_steps(total: int, *, n_linear: int = 8) -> list[int]:
    """``0, 1, 2, 4, …`` (powers of two below the linear spacing), then ``n_linear`` even steps to ``total``."""
    if total < 1:
        raise ValueError(f"total steps must be >= 1, got {total}")
    spacing = max(1, math.ceil(total / n_linear))
    steps = {0, total, *range(spacing, total, spacing)}
    k = 1
    while k < spacing:
        steps.add(k)
        k *= 2
    return sorted(s for s in steps if s <= total)


@dataclass(frozen=True)
class FineTuneConfig:
    """Hyperparameters of :func:`fine_tune` (saved with the trajectory); checked when built.

    ``warmup`` may exceed ``steps``: the run then ends on the warmup ramp (short test runs do).
    ``checkpoints`` (default: :func:`checkpoint_steps`) are the steps saved, within ``0..steps``.
    """

    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 20
    batch_size: int = 64
    seed: int = 0
    lm_loss_weight: float = 0.0
    frozen: tuple[str, ...] = ()
    answers: tuple[str, str] = ("True", "False")
    checkpoints: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name, kind, low, low_open in (
            ("steps", int, 1, False),
            ("lr", float, 0, True),
            ("weight_decay", float, 0, False),
            ("warmup", int, 0, False),
            ("batch_size", int, 1, False),
            ("seed", int, 0, False),
            ("lm_loss_weight", float, 0, False),
        ):
            check_number(f"FineTuneConfig.{name}", getattr(self, name), kind=kind, low=low, low_open=low_open)
        if not isinstance(self.frozen, (tuple, list)) or not all(isinstance(p, str) for p in self.frozen):
            raise TypeError(
                f"FineTuneConfig.frozen must be a tuple of parameter-name prefixes such as ('embed.', 'blocks.0.'); "
                f"got {self.frozen!r}"
            )
        answers = self.answers
        pair = isinstance(answers, (tuple, list)) and len(answers) == 2 and all(isinstance(a, str) for a in answers)
        if not pair or answers[0] == answers[1]:
            raise ValueError(f"FineTuneConfig.answers must be two different strings (true, false); got {answers!r}")
        saves = self.checkpoints
        if saves is not None and not (
            isinstance(saves, (tuple, list))
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= self.steps for s in saves)
        ):
            raise ValueError(f"FineTuneConfig.checkpoints must be steps in 0..{self.steps}; got {saves!r}")

    def schedule(self, step: int) -> float:
        """Learning rate at ``step``: linear warmup, then linear decay to zero at ``steps``."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        return self.lr * max(0.0, (self.steps - step) / max(1, self.steps - self.warmup))


@dataclass(frozen=True)
class Anchor:
    """Concept anchoring: keep a frozen reporter's reading of the model where it was before training.

    The loss adds ``weight * mean((w . h_t(x) - w . h_0(x))^2) / Var(w . h_0)`` over the anchored rows
    of each batch, where ``h_t`` is the training model's residual at the reporter's site (last token)
    and ``w . h_0`` the reporter's score on the model before training (``reference``). No labels are
    needed; ``rows`` chooses which statements are anchored (e.g. only contexts one can check).

    Training on the same statements anchors the rows of each training batch; training on a token
    stream anchors a batch of anchored statements drawn beside each stream batch (one more forward).
    """

    reporter: Reporter
    reference: Tensor
    rows: Tensor
    tokens: Tokens
    source: str
    weight: float = 1.0


def anchor_to(
    model: TransformerBridge, statements: StatementSet, reporter: Reporter, *, rows=None, weight: float = 1.0
) -> Anchor:
    """An :class:`Anchor` whose reference scores come from ``model`` as it is now (before training).

    ``rows`` is a boolean mask over the statements (not indices); ``weight`` >= 0 (0 trains as without it).
    """
    if not isinstance(statements, StatementSet):
        raise TypeError(f"anchor_to reads a StatementSet; got {type(statements).__name__}")
    if not isinstance(reporter, Reporter) or reporter.reads != "statement":
        raise ValueError("anchoring needs a statement reporter (it reads one residual per statement)")
    check_number("anchor weight", weight, low=0)
    if reporter.w.shape[-1] != model.cfg.d_model:
        raise ValueError(
            f"the anchor's reporter reads d_model={reporter.w.shape[-1]} but the model's d_model is "
            f"{model.cfg.d_model}: fit it on this model (or transport it through the growth map)"
        )
    rows = torch.ones(len(statements), dtype=torch.bool) if rows is None else torch.as_tensor(rows)
    if rows.dtype != torch.bool or rows.shape != (len(statements),):
        raise ValueError(
            f"anchor rows must be a boolean mask of shape ({len(statements)},), got {rows.dtype} {tuple(rows.shape)}"
        )
    if int(rows.sum()) < 2:
        raise ValueError(
            f"anchoring needs at least 2 anchored statements (a variance to scale by), got {int(rows.sum())}"
        )
    acts = capture(model, statements, [reporter.site], batch_size=256, dtype=torch.float64)
    return Anchor(
        reporter, reporter(acts.at(0)).detach(), rows, tokenize(model, statements.texts), statements.fingerprint, weight
    )


def _anchor_id(anchor: Anchor | None) -> str | None:
    """What a resumed run must match: the reporter, its site, the weight, the anchored rows, the reference."""
    if anchor is None:
        return None
    h = hashlib.sha256()
    for t in (anchor.reporter.w, anchor.reference, anchor.rows):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(f"{anchor.reporter.site}|{anchor.reporter.b}|{anchor.weight}".encode())
    return h.hexdigest()[:16]


def _anchor_loss(anchor: Anchor, resid: Tensor, last: Tensor, idx: np.ndarray | Tensor) -> Tensor:
    device = resid.device
    rows = anchor.rows[idx].to(device)
    if not rows.any():
        return resid.sum() * 0
    w = anchor.reporter.w.to(device)
    last = last.to(device)
    reading = resid[torch.arange(len(last), device=device), last].to(w.dtype) @ w
    target = anchor.reference[idx].to(device) - anchor.reporter.b
    scale = anchor.reference[anchor.rows].var().clamp_min(1e-12)
    return anchor.weight * ((reading - target)[rows].square().mean() / scale).float()


def _rows(tokens: Tokens, idx: np.ndarray) -> Tokens:
    ids, mask = tokens.ids[idx], tokens.mask[idx]
    width = int(mask.sum(1).max())  # right padding: columns past the longest row are all padding
    return Tokens(ids[:, :width], mask[:, :width])


def statement_loss(model: TransformerBridge, batch: Tokens, targets: Tensor, lm_loss_weight: float) -> Tensor:
    """Cross-entropy of the answer token after each statement (+ weighted next-token loss inside it)."""
    device = next(model.parameters()).device
    ids, mask = batch.ids.to(device), batch.mask.to(device)
    logits = model(ids, attention_mask=mask)
    last = mask.sum(1) - 1
    loss = F.cross_entropy(logits[torch.arange(len(last), device=device), last], targets.to(device))
    if lm_loss_weight:
        inside = mask[:, 1:].bool()
        lm = F.cross_entropy(logits[:, :-1][inside], ids[:, 1:][inside])
        loss = loss + lm_loss_weight * lm
    return loss


@torch.no_grad()
def answer_loss(
    model: TransformerBridge,
    statements: StatementSet,
    labels: Tensor,
    *,
    answers: tuple[str, str] = ("True", "False"),
    batch_size: int = 512,
) -> float:
    """Mean cross-entropy of the labelled answer token after each statement (the task loss, held out)."""
    true_id, false_id = answer_token_ids(model, answers)
    targets = torch.where(torch.as_tensor(labels).bool(), true_id, false_id)
    tokens = tokenize(model, statements.texts)
    total = 0.0
    for start in range(0, len(statements), batch_size):
        idx = np.arange(start, min(start + batch_size, len(statements)))
        total += float(statement_loss(model, _rows(tokens, idx), targets[idx], 0.0)) * len(idx)
    return total / len(statements)


def _with_resid(model: TransformerBridge, site: str, forward: Callable[[], Tensor]) -> tuple[Tensor, Tensor]:
    """``forward()`` and the residual at ``site`` from that pass, kept inside the autograd graph."""
    grabbed: dict[str, Tensor] = {}

    def grab(resid: Tensor, *, hook) -> None:
        grabbed["resid"] = resid

    with loud_hooks(model, [(site, grab)]):
        result = forward()
    return result, grabbed["resid"]


def _batch_loss(
    model: TransformerBridge,
    data: StatementSet | TokenStream,
    labels: Tensor | None,
    config: FineTuneConfig,
    anchor: Anchor | None,
) -> Callable[[np.random.Generator], Tensor]:
    """Checks the data against the model and returns ``loss(rng)`` of one random training batch."""
    if isinstance(data, TokenStream):
        if labels is not None:
            raise ValueError("a token stream trains on its next tokens: pass labels=None")
        if data.context > model.cfg.n_ctx:
            raise ValueError(f"the stream's context {data.context} exceeds the model's n_ctx {model.cfg.n_ctx}")
        if int(data.ids.max()) >= model.cfg.d_vocab or int(data.ids.min()) < 0:
            raise ValueError(f"the stream holds token ids outside the model's vocabulary 0..{model.cfg.d_vocab - 1}")
        anchored = None if anchor is None else anchor.rows.nonzero()[:, 0]

        def stream_batch(rng: np.random.Generator) -> Tensor:
            windows = data.windows(data.sample(rng, config.batch_size))
            if anchor is None:
                return window_loss(model, windows)
            idx = anchored[torch.as_tensor(rng.integers(0, len(anchored), config.batch_size))]
            batch = _rows(anchor.tokens, idx.numpy())
            device = next(model.parameters()).device
            forward = lambda: model(batch.ids.to(device), attention_mask=batch.mask.to(device))  # noqa: E731
            _, resid = _with_resid(model, anchor.reporter.site, forward)
            return window_loss(model, windows) + _anchor_loss(anchor, resid, batch.mask.sum(1) - 1, idx)

        return stream_batch
    if not isinstance(data, StatementSet):
        raise TypeError(f"fine_tune trains on a StatementSet or a TokenStream, got {type(data).__name__}")
    if labels is None:
        raise ValueError("statements need answer labels (one per statement); for next-token training use a TokenStream")
    labels = check_labels("labels", labels)
    if labels.shape != (len(data),):
        raise ValueError(f"need one label per statement: {len(labels)} labels for {len(data)} statements")
    if anchor is not None and anchor.source != data.fingerprint:
        raise ValueError("the anchor's reference scores must come from these statements (build it with anchor_to)")
    true_id, false_id = answer_token_ids(model, config.answers)
    targets = torch.where(labels, true_id, false_id)
    tokens = tokenize(model, data.texts)

    def statement_batch(rng: np.random.Generator) -> Tensor:
        idx = rng.integers(0, len(data), config.batch_size)
        batch = _rows(tokens, idx)
        forward = lambda: statement_loss(model, batch, targets[idx], config.lm_loss_weight)  # noqa: E731
        if anchor is None:
            return forward()
        loss, resid = _with_resid(model, anchor.reporter.site, forward)
        return loss + _anchor_loss(anchor, resid, batch.mask.sum(1) - 1, idx)

    return statement_batch


def _freeze(model: TransformerBridge, prefixes: tuple[str, ...]) -> None:
    """Freeze parameters by their TransformerLens names (``"embed."``, ``"blocks.0."``, as in ``state_dict``)."""
    named = {k: v for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, torch.nn.Parameter)}
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in named)]
    if unknown:
        raise ValueError(f"freeze prefixes {unknown} match no parameter; parameters look like {list(named)[:4]}")
    for name, p in named.items():
        p.requires_grad_(not name.startswith(prefixes) if prefixes else True)


def fine_tune(
    model: TransformerBridge,
    data: StatementSet | TokenStream,
    labels: Tensor | None,
    out: str | Path,
    *,
    base_spec: str,
    config: FineTuneConfig = FineTuneConfig(),
    anchor: Anchor | None = None,
    lora: LoraConfig | None = None,
    progress: bool | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> Trajectory:
    """Train ``model`` (loaded from ``base_spec``) in place on statements with answer ``labels``, or on a
    :class:`TokenStream` (``labels=None``); with ``anchor``, also keep the anchor's reporter reading what
    it read before training.

    Writes ``out/step_<k>.safetensors`` at every checkpoint step and ``out/trajectory.json``; a rerun
    with the same arguments resumes from the last saved state (``out/.train_state.json`` and its tensors
    file), bitwise as if never stopped. ``on_step(step, loss)`` is called after every optimizer step (e.g.
    to log, or to stop a test run on purpose).

    With ``lora``, the model's weights stay as they are and only the adapters train (seeded by
    ``config.seed``); each ``step_<k>.safetensors`` is the merged model, loaded like any other, with its
    adapters beside it in ``step_<k>.lora.safetensors`` (:func:`elk_lens.lora.adapters_at`), and ``model``
    ends holding the merged weights.
    """
    out = Path(out)
    if not isinstance(config, FineTuneConfig):
        raise TypeError(f"config must be a FineTuneConfig; got {type(config).__name__}")
    if lora is not None and not isinstance(lora, LoraConfig):
        raise TypeError(f"lora must be an elk_lens.lora.LoraConfig or None; got {type(lora).__name__}")
    if lora is not None and config.frozen:
        raise ValueError(
            f"FineTuneConfig.frozen={config.frozen!r} with LoRA: only the adapters train, every model weight "
            f"is frozen already; leave frozen empty (choose the adapted projections with LoraConfig.targets)"
        )
    if offloaded := [name for name, p in model.named_parameters() if p.is_meta][:3]:
        raise ValueError(
            f"fine_tune trains weights in memory; this model's {offloaded} are offloaded (a device_map with 'cpu' "
            f"or 'disk' entries, elk_lens._placement): load it onto devices that hold it whole"
        )
    saves = sorted(set(config.checkpoints or checkpoint_steps(config.steps)))
    batch_loss = _batch_loss(model, data, labels, config, anchor)
    state_path = out / STATE_FILE
    if not state_path.is_file():
        refuse_pickle(out / OLD_STATE_FILE, what="training state", restart="Restart the run in a new directory.")
    out.mkdir(parents=True, exist_ok=True)
    adapters = None if lora is None else Lora(model, lora, seed=config.seed)
    if adapters is None:
        _freeze(model, config.frozen)
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        model.requires_grad_(False)
        params = list(adapters.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    step, history, done, saved_adapters = 0, [], [], []
    anchor_id = _anchor_id(anchor)
    lora_id = None if lora is None else lora_record(lora, model)
    if state_path.is_file():
        state = read_state(state_path, keys=_STATE_KEYS, what="training state")
        if (state["config"], state["data"], state["anchor"]) != (asdict(config), data.fingerprint, anchor_id):
            raise ValueError(f"{out} holds a run with other settings, data or anchor; use another directory")
        if state.get("lora") != lora_id:
            said = (
                "a run without LoRA"
                if "lora" not in state
                else "a LoRA run (pass its lora= settings to resume it)"
                if lora is None
                else "a LoRA run with other LoRA settings or on another base model"
            )
            raise ValueError(f"{out} holds {said}; use another directory")
        try:
            if adapters is None:
                model.load_state_dict(state["model"])
            else:
                adapters.load(state["model"])
                saved_adapters = state["adapters"]
            opt.load_state_dict(state["opt"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, ValueError, TypeError, KeyError) as e:
            raise ValueError(
                f"{state_path}: the saved training state does not restore onto this model and "
                f"optimizer ({type(e).__name__}: {e}); use another directory"
            ) from None
        step, history, done = state["step"], state["history"], state["done"]

    def checkpoint() -> None:
        name = f"step_{step}.safetensors"
        tensors = model.state_dict() if adapters is None else adapters.merged(model)
        weights = save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})
        atomic_write_bytes(out / name, weights)
        done.append(Checkpoint(step, weights=name, sha256=hashlib.sha256(weights).hexdigest()).__dict__)
        info = {"config": asdict(config), "data": data.fingerprint, "anchor": anchor_id, "history": history}
        lora_state = {}
        if adapters is not None:
            saved_adapters.append(adapters.save(out / f"step_{step}.lora.safetensors", step))
            info["lora"] = {**lora_id, "adapters": saved_adapters}
            lora_state = {"lora": lora_id, "adapters": saved_adapters}
        Trajectory([Checkpoint(**c) for c in done], base_spec, out, info).save(out)
        write_state(
            state_path,
            {
                "model": model.state_dict() if adapters is None else adapters.tensors(),
                "opt": opt.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "history": history,
                "done": done,
                "config": asdict(config),
                "data": data.fingerprint,
                "anchor": anchor_id,
                **lora_state,
            },
        )

    if step == 0 and not done and 0 in saves:
        checkpoint()
    model.train()
    started = time.perf_counter()
    bar = progress_bar(config.steps, "fine-tune", progress=progress, initial=step)
    try:
        with nullcontext() if adapters is None else adapters.attached():
            while step < config.steps:
                for group in opt.param_groups:
                    group["lr"] = config.schedule(step)
                loss = batch_loss(rng)
                if adapters is not None:
                    adapters.check_fired()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                bar.update(1)
                if step in saves:
                    history.append({"step": step, "loss": round(loss.item(), 5)})
                    checkpoint()
                if on_step is not None:
                    on_step(step, loss.item())
    finally:
        bar.close()
        model.eval()
    if adapters is not None:
        model.load_state_dict(adapters.merged(model))
    trajectory = Trajectory.load(out)
    trajectory.info["seconds_this_run"] = round(time.perf_counter() - started, 2)
    return trajectory
