"""The recipe that trains ``zoo:quirky-arith-base``, ``zoo:quirky-arith`` and ``zoo:quirky-arith-fullft``.

Two stages, after the quirky-models paper (arXiv 2312.01037) and docs/methods/quirky_recipe.md:

1. **Truthful base.** Alice and Bob both label by the true sum. Loss: cross-entropy on the label token
   plus a dense next-token loss on the rest of the sequence (a label-only loss leaves tiny models at
   the majority class for minutes).
2. **Quirk.** Bob now labels by the sloppy sum. ``quirky-arith`` fine-tunes with the embeddings and
   blocks 0-2 frozen: the last block learns the quirk, so the truth stays readable in the residual
   entering it while Bob's output lies — the knowledge/output split ELK needs. (With blocks 0-1
   frozen, as in the prototype, seed 0 kept truth at layers 2/3 with AUROC 0.98/0.93 on Bob-hard
   disagreements but only 0.67/0.64 on the control set.) ``quirky-arith-fullft`` fine-tunes every parameter, which moves
   the truth representation itself (the concept drift later analyses track).

Each stage keeps a constant learning rate until held-out accuracy reaches its ``switch_acc``, then
cools down linearly (the plateau before learning starts varies by seed, so a fixed schedule can
cool down before learning happens).

Two departures from the prototype (docs/methods/quirky_recipe.md), both measured (see the model card and
docs/results/embedded-models.md):

- **"Name:" is one token** (``"Bob:"``), so the read position *is* the name token and the upper
  blocks see who is speaking at no cost. With a separate ``:`` token, the stage-2 quirk stayed at
  "Bob tells the truth" for 2000-6000 steps in 4 of 5 seeds (the name was barely decodable at the
  read position: probe AUROC 0.51-0.65).
- **An auxiliary sloppy persona, Carol**, is in both stages' training mix (never in evaluation data),
  so the base model computes the sloppy sum — the way a pretrained LM already knows what a sloppy
  answer is before LoRA teaches Bob the quirk in the paper.

Training runs on the bare ``NativeModel`` (about 20% faster than through the bridge), whose weights
are then renamed into a bridge state dict. Deterministic for a seed at a fixed thread count. A
killed run resumes from its last checkpoint (every ``ckpt_every`` steps, ``.<stage>.state.json`` and its
tensors: safetensors + JSON, never a pickle) or finished stage. An old pickled checkpoint
(``.<stage>.ckpt``) is refused, not loaded: unpickling a file can run any code.
"""

import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources.native import NativeModel, initialize_native_model
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from elk_lens._progress import progress_bar
from elk_lens._state import clear_state, read_state, refuse_pickle, write_state
from elk_lens._threads import torch_threads
from elk_lens.models import NATIVE_CONFIG_FILE, load_model, save_model
from elk_lens.quirky.data import CHARACTERS, QuirkyRows, sample_rows

__all__ = ["QUIRKY_VOCAB", "QuirkyRecipe", "build_tokenizer", "encode_rows", "to_bridge", "train_quirky"]

QUIRKY_VOCAB = (
    "<pad>",
    "<bos>",
    "<unk>",
    *"0123456789",
    "+",
    "=",
    ".",
    ":",
    ";",
    "Alice",
    "Bob",
    "True",
    "False",
    "Carol",
    "Alice:",
    "Bob:",
    "Carol:",
)
_ID = {t: i for i, t in enumerate(QUIRKY_VOCAB)}
_STATE_KEYS = ("model", "opt", "rng", "step", "history", "cooldown_from")


@dataclass
class QuirkyRecipe:
    """Every setting of the recipe; written into the model cards."""

    seed: int = 0
    n_layers: int = 4
    d_model: int = 128
    d_head: int = 32
    n_ctx: int = 24
    batch_size: int = 64
    lm_loss_weight: float = 1.0
    base_lr: float = 1e-3
    base_weight_decay: float = 0.1
    base_warmup: int = 100
    base_switch_acc: float = 0.98
    base_cooldown: int = 2000
    base_max_steps: int = 14000
    quirk_lr: float = 1e-3
    quirk_weight_decay: float = 0.01
    quirk_warmup: int = 20
    quirk_switch_acc: float = 0.98
    quirk_cooldown: int = 1000
    quirk_max_steps: int = 8000
    quirk_frozen_blocks: int = 3
    quirk_lm_loss_weight: float = 1.0
    eval_every: int = 250
    eval_rows: int = 1024
    ckpt_every: int = 1000
    threads: int = 2
    device: str = "cpu"
    fused_name_colon: bool = True
    aux_sloppy_character: str | None = "Carol"
    stages: list[str] = field(default_factory=lambda: ["base", "quirk", "fullft"])

    @property
    def label_pos(self) -> int:
        """Index of the label token in ``<bos>aaa+bbb=cccc.Name:Label;``; logits one earlier predict it."""
        return 15 if self.fused_name_colon else 16

    def __post_init__(self) -> None:
        if not 0 <= self.quirk_frozen_blocks < self.n_layers:
            raise ValueError(
                f"quirk_frozen_blocks must be in 0..{self.n_layers - 1} (some block must learn the quirk), "
                f"got {self.quirk_frozen_blocks}"
            )
        unknown = set(self.stages) - {"base", "quirk", "fullft"}
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; valid: ['base', 'quirk', 'fullft']")

    def native_config(self) -> dict:
        return dict(
            d_model=self.d_model,
            d_head=self.d_head,
            n_layers=self.n_layers,
            n_ctx=self.n_ctx,
            d_vocab=len(QUIRKY_VOCAB),
            act_fn="gelu",
            seed=self.seed,
        )


def build_tokenizer(path: Path, fused_name_colon: bool = True) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: one token per digit, symbol, name (``"Bob:"`` when fused) and label word."""
    tk = Tokenizer(models.WordLevel(vocab=dict(_ID), unk_token="<unk>"))
    names = "Alice:|Bob:|Carol:|" if fused_name_colon else ""
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(f"{names}Alice|Bob|Carol|True|False|."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))


def _digits(x: np.ndarray, width: int) -> np.ndarray:
    places = 10 ** np.arange(width - 1, -1, -1)
    return (x[:, None] // places) % 10 + _ID["0"]


def encode_rows(rows: QuirkyRows, character: np.ndarray, label: np.ndarray, fused: bool = True) -> torch.Tensor:
    """Token ids of ``<bos>aaa+bbb=cccc.Name:Label;`` for every row, built without the tokenizer."""
    n = len(rows)
    col = lambda tok: np.full((n, 1), _ID[tok])  # noqa: E731
    suffix = ":" if fused else ""
    names = np.vectorize(lambda c: _ID[c + suffix], otypes=[np.int64])(character)[:, None]
    labels = np.where(label, _ID["True"], _ID["False"])[:, None]
    name_part = [names] if fused else [names, col(":")]
    parts = [
        col("<bos>"),
        _digits(rows.a, 3),
        col("+"),
        _digits(rows.b, 3),
        col("="),
        _digits(rows.c, 4),
        col("."),
        *name_part,
        labels,
        col(";"),
    ]
    return torch.as_tensor(np.concatenate(parts, 1), dtype=torch.long)


def _batch(
    rng: np.random.Generator, n: int, split: str, quirky: bool, aux: str | None, fused: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training rows: Alice and Bob (Bob sloppy only when ``quirky``), plus the always-sloppy ``aux``."""
    names = np.array((*CHARACTERS, aux) if aux else CHARACTERS, dtype=object)
    rows = sample_rows(rng, n, split)
    character = rng.choice(names, n)
    sloppy = (character == aux) | ((character == "Bob") & quirky)
    label = np.where(sloppy, rows.c == rows.s_b, rows.c == rows.s)
    return encode_rows(rows, character, label, fused), torch.as_tensor(character == "Bob")


def _loss(model: NativeModel, tokens: torch.Tensor, lm_weight: float, label_pos: int) -> torch.Tensor:
    tokens = tokens.to(next(model.parameters()).device)
    logits = model(tokens[:, :-1])
    targets = tokens[:, 1:]
    per_tok = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # [batch, pos]
    read = label_pos - 1
    label_loss = per_tok[:, read].mean()
    rest = torch.cat([per_tok[:, :read], per_tok[:, read + 1 :]], 1)
    return label_loss + lm_weight * rest.mean()


@torch.no_grad()
def label_accuracy(model: NativeModel, tokens: torch.Tensor, label_pos: int) -> torch.Tensor:
    """Per-row correctness of the True/False choice at the read position (bool [batch])."""
    tokens = tokens.to(next(model.parameters()).device)
    logits = model(tokens[:, :label_pos])[:, label_pos - 1]
    says_true = logits[:, _ID["True"]] > logits[:, _ID["False"]]
    return says_true == (tokens[:, label_pos] == _ID["True"])


def _bare_model(cfg: dict) -> NativeModel:
    tl_cfg = TransformerBridgeConfig.from_dict(cfg)
    model = NativeModel(copy.deepcopy(tl_cfg))
    initialize_native_model(model, tl_cfg)
    return model


def _bridge_key(bare_key: str) -> str:
    """Bare ``NativeModel`` parameter name -> bridge name (see docs/methods/transformer_lens_4_3.md §1.2)."""
    k = re.sub(r"^layers\.", "blocks.", bare_key)
    k = k.replace("mlp.fc_in.", "mlp.in.").replace("mlp.fc_out.", "mlp.out.")
    for old, new in (("tok_embed.", "embed."), ("pos.", "pos_embed."), ("ln_out.", "ln_final."), ("head.", "unembed.")):
        k = re.sub(rf"^{re.escape(old)}", new, k)
    return k


def _bare_to_bridge_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {_bridge_key(k): v.detach().clone() for k, v in state.items()}
    out.setdefault("unembed.bias", torch.zeros(out["unembed.weight"].shape[0]))  # the bridge's zero buffer
    return out


def to_bridge(bare: NativeModel, cfg: dict, tokenizer) -> TransformerBridge:
    """A bridge (with hooks and tokenizer) holding the bare model's weights."""
    bridge = TransformerBridge.boot_native({**cfg, "init_weights": False}, tokenizer=tokenizer)
    bridge.load_state_dict(_bare_to_bridge_keys({k: v.cpu() for k, v in bare.state_dict().items()}), strict=True)
    return bridge.eval()


class _Schedule:
    """Linear warmup, constant, then a linear cooldown to zero once ``start_cooldown`` is called."""

    def __init__(self, lr: float, warmup: int, cooldown: int):
        self.lr, self.warmup, self.cooldown, self.cooldown_from = lr, warmup, cooldown, None

    def __call__(self, step: int) -> float:
        factor = min(1.0, (step + 1) / self.warmup)
        if self.cooldown_from is not None:
            factor *= max(0.0, 1.0 - (step - self.cooldown_from) / self.cooldown)
        return self.lr * factor


def _train_stage(
    model: NativeModel,
    *,
    name: str,
    recipe: QuirkyRecipe,
    quirky: bool,
    lr: float,
    weight_decay: float,
    warmup: int,
    max_steps: int,
    cooldown: int,
    switch_acc: float,
    lm_loss_weight: float,
    ckpt: Path,
    log: Callable[[str], None],
) -> dict:
    """One training stage with periodic evaluation and resumable checkpoints (``ckpt``: the state's JSON)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = _Schedule(lr, warmup, cooldown)
    rng = np.random.default_rng([recipe.seed, 1 if quirky else 0, 0])  # the last entry is the stream version
    eval_tokens, _ = _batch(
        np.random.default_rng([recipe.seed, 99]),
        recipe.eval_rows,
        "val",
        quirky,
        recipe.aux_sloppy_character,
        recipe.fused_name_colon,
    )
    step, history, started = 0, [], time.perf_counter()
    if not ckpt.is_file():
        refuse_pickle(
            ckpt.with_name(f".{name}.ckpt"),
            what="recipe checkpoint",
            restart=f"Train into a new directory (or delete it to restart the {name} stage).",
        )
    if ckpt.is_file():
        state = read_state(ckpt, keys=_STATE_KEYS, what=f"{name} stage checkpoint")
        model.load_state_dict(state["model"])  # copies onto the model's device; the optimizer casts likewise
        opt.load_state_dict(state["opt"])
        rng.bit_generator.state = state["rng"]
        step, history, sched.cooldown_from = state["step"], state["history"], state["cooldown_from"]
        log(f"[{name}] resumed at step {step}")
    bar = progress_bar(max_steps, name, initial=step, leave=False)
    while step < max_steps and (sched.cooldown_from is None or step < sched.cooldown_from + cooldown):
        for group in opt.param_groups:
            group["lr"] = sched(step)
        tokens, _ = _batch(
            rng, recipe.batch_size, "train", quirky, recipe.aux_sloppy_character, recipe.fused_name_colon
        )
        loss = _loss(model, tokens, lm_loss_weight, recipe.label_pos)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if step % recipe.eval_every == 0:
            acc = label_accuracy(model.eval(), eval_tokens, recipe.label_pos).float().mean().item()
            model.train()
            history.append({"step": step, "loss": round(loss.item(), 5), "val_acc": round(acc, 5)})
            bar.set_postfix(loss=f"{loss.item():.3f}", val_acc=f"{acc:.3f}")
            if sched.cooldown_from is None and acc >= switch_acc:
                sched.cooldown_from = step
                log(f"[{name}] val acc {acc:.4f} >= {switch_acc} at step {step}: cooldown for {cooldown} steps")
            if sched.cooldown_from is None and step >= max_steps - cooldown:
                sched.cooldown_from = step
        if step % recipe.ckpt_every == 0:
            write_state(
                ckpt,
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "rng": rng.bit_generator.state,
                    "step": step,
                    "history": history,
                    "cooldown_from": sched.cooldown_from,
                },
            )
    bar.close()
    clear_state(ckpt)
    return {"steps": step, "seconds": round(time.perf_counter() - started, 1), "history": history}


def _freeze_lower(model: NativeModel, n_blocks: int) -> None:
    """Freeze the embeddings and blocks ``0..n_blocks-1``."""
    for name, p in model.named_parameters():
        frozen = name.startswith(("tok_embed.", "pos.")) or any(
            name.startswith(f"layers.{i}.") for i in range(n_blocks)
        )
        p.requires_grad_(not frozen)


def train_quirky(recipe: QuirkyRecipe, out: Path, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Train the stages named in ``recipe.stages`` into ``out/<model name>``; resumes finished work.

    Returns the directory of every model written. Cards hold the recipe, steps, wall time and the
    training-time accuracies; :mod:`elk_lens.quirky.card` adds the measured knowledge/output split.
    Runs on ``recipe.threads`` torch threads and its own seeded RNG: the caller's thread count and
    random state are as they were afterwards.
    """
    with torch_threads(recipe.threads), torch.random.fork_rng(devices=[] if recipe.device == "cpu" else None):
        torch.manual_seed(recipe.seed)
        return _train(recipe, out, log)


def _train(recipe: QuirkyRecipe, out: Path, log: Callable[[str], None]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    cfg = recipe.native_config()
    tokenizer = build_tokenizer(out / ".tokenizer", recipe.fused_name_colon)
    dirs = {"base": out / "quirky-arith-base", "quirk": out / "quirky-arith", "fullft": out / "quirky-arith-fullft"}
    written = {}

    base = _bare_model(cfg).to(recipe.device)
    if (dirs["base"] / NATIVE_CONFIG_FILE).is_file():
        _load_bare(base, dirs["base"])  # verifies the directory's files first
        base_info = json.loads((dirs["base"] / "card.json").read_text())["training"]["base"]
        log(f"[base] found {dirs['base']}, skipping")
    else:
        base.train()
        base_info = _train_stage(
            base,
            name="base",
            recipe=recipe,
            quirky=False,
            lr=recipe.base_lr,
            weight_decay=recipe.base_weight_decay,
            warmup=recipe.base_warmup,
            max_steps=recipe.base_max_steps,
            cooldown=recipe.base_cooldown,
            switch_acc=recipe.base_switch_acc,
            lm_loss_weight=recipe.lm_loss_weight,
            ckpt=out / ".base.state.json",
            log=log,
        )
        card = _card("quirky-arith-base", recipe, {"base": base_info}, "truthful: both names labelled by the true sum")
        save_model(to_bridge(base, cfg, tokenizer), dirs["base"], card=card)
    written["quirky-arith-base"] = dirs["base"]

    for stage, frozen in (("quirk", recipe.quirk_frozen_blocks), ("fullft", 0)):
        if stage not in recipe.stages:
            continue
        name = dirs[stage].name
        if (dirs[stage] / NATIVE_CONFIG_FILE).is_file():
            log(f"[{stage}] found {dirs[stage]}, skipping")
            written[name] = dirs[stage]
            continue
        model = copy.deepcopy(base).train()
        _freeze_lower(model, frozen)
        info = _train_stage(
            model,
            name=stage,
            recipe=recipe,
            quirky=True,
            lr=recipe.quirk_lr,
            weight_decay=recipe.quirk_weight_decay,
            warmup=recipe.quirk_warmup,
            max_steps=recipe.quirk_max_steps,
            cooldown=recipe.quirk_cooldown,
            switch_acc=recipe.quirk_switch_acc,
            lm_loss_weight=recipe.quirk_lm_loss_weight,
            ckpt=out / f".{stage}.state.json",
            log=log,
        )
        what = (
            f"quirky: Bob labels by the sloppy sum; fine-tuned from quirky-arith-base with the embeddings and "
            f"blocks 0-{frozen - 1} frozen"
            if frozen
            else "quirky: Bob labels by the sloppy sum; every parameter fine-tuned from quirky-arith-base"
        )
        card = _card(name, recipe, {"base": base_info, stage: info}, what)
        if frozen:
            card = {**card, "positive_control": _positive_control(frozen)}
        save_model(to_bridge(model, cfg, tokenizer), dirs[stage], card=card)
        written[name] = dirs[stage]
    return written


def _load_bare(model: NativeModel, path: Path) -> None:
    """The weights of a model saved by this recipe, read through :func:`load_model` (which verifies them)."""
    state = load_model(str(path)).state_dict()
    rename = {_bridge_key(k): k for k in model.state_dict()}
    model.load_state_dict({rename[k]: v for k, v in state.items() if k in rename}, strict=True)  # copies onto device


def _positive_control(frozen_blocks: int) -> dict:
    """What a frozen prefix makes of the quirky model's knowledge/output split: built in, not found.

    The embeddings and blocks below ``frozen_blocks`` keep the truthful base's weights, so every residual
    up to ``blocks.{frozen_blocks}.hook_resid_pre`` equals the base model's (bit for bit on the test split)
    and a probe trained on Alice-easy must read the truth there on Bob's prompts too.
    """
    site = f"blocks.{frozen_blocks}.hook_resid_pre"
    return {
        "frozen": f"the embeddings and blocks 0-{frozen_blocks - 1}",
        "equal_to_base_through": site,
        "reading": (
            f"Every residual up to {site} equals quirky-arith-base's (the truthful model): a probe trained on "
            "Alice-easy must read the truth there, on Bob's prompts too. The knowledge/output split at those "
            "sites is built in by the freezing, a positive control for the pipeline, not a finding of an ELK "
            "method. Read each probe AUROC beside random directions at the same site, as the default analysis "
            "does. The realistic case is zoo:quirky-arith-fullft: every parameter fine-tuned, where refitted "
            "probes follow Bob."
        ),
        "realistic_case": "zoo:quirky-arith-fullft",
    }


def _card(name: str, recipe: QuirkyRecipe, training: dict, what: str) -> dict:
    return {
        "name": name,
        "summary": what,
        "task": "quirky arithmetic: '012+045=0057.Bob:' -> True/False (elk_lens.quirky.data)",
        "recipe": asdict(recipe),
        "native_config": recipe.native_config(),
        "training": training,
        "torch": torch.__version__,
    }
