"""Ways of asking a model whether a statement is true: zero-shot, few-shot, and the instruct chat template.

The knowledge/output gap compares what a probe reads in the residual with what the model *says* when
asked. A :class:`Prompt` is the text before the statement (shared by every statement, so
:func:`~elk_lens.lm_output.prompted_log_odds` runs it once and reuses its keys and values), the text
after it, and the (true, false) answer tokens; the model's answer is the log-odds of the two answers at
the prompt's last token. The formats follow Marks & Tegmark's ``few_shot.py`` (``"<statement> This
statement is: TRUE"`` lines before the query) and Mallen et al.'s zero-shot LM baseline; see
``docs/real-models.md``.
"""

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.exceptions import StopAtLayerException
from transformers import DynamicCache

from elk_lens._checks import check_number, check_texts
from elk_lens._hooks import loud_hooks
from elk_lens._placement import input_device
from elk_lens.data.statements import StatementSet
from elk_lens.lm_output import UNEMBED_IN, answer_logits, answer_token_ids, check_answers, output_log_odds

__all__ = ["QUESTION", "Prompt", "chat_prompt", "few_shot_prompt", "prompted_log_odds", "zero_shot_prompt"]

QUESTION = " This statement is:"
ANSWERS = (" True", " False")
CHAT_ANSWERS = ("True", "False")  # the assistant turn's first token: no leading space
INSTRUCTION = "Is the following statement true or false? Answer with one word: True or False."
_SLOT = "\x00STATEMENT\x00"  # stands for the statement while the chat template is applied


@dataclass(frozen=True)
class Prompt:
    """``prefix + statement + suffix``, answered by one of ``answers`` (true answer, false answer).

    The prompt's tokens are the prefix's (with the model's BOS rule) followed by those of
    ``statement + suffix`` (no special tokens): a token boundary between prefix and statement, so the
    prefix is computed once for every statement.
    """

    name: str
    prefix: str
    suffix: str
    answers: tuple[str, str]
    model_bos: bool = True  # prepend BOS to the prefix by the model's rule (False: the prefix text has its own)

    def __post_init__(self) -> None:
        check_answers(self.answers)
        for field in ("name", "prefix", "suffix"):
            if not isinstance(getattr(self, field), str):
                raise TypeError(f"Prompt.{field} must be a string; got {getattr(self, field)!r}")


def zero_shot_prompt(question: str = QUESTION, answers: tuple[str, str] = ANSWERS) -> Prompt:
    """``"<statement> This statement is:"`` → ``" True"`` / ``" False"``."""
    return Prompt("zero_shot", "", question, tuple(answers))


def few_shot_prompt(
    examples: StatementSet, k: int, *, seed: int = 0, question: str = QUESTION, answers: tuple[str, str] = ANSWERS
) -> Prompt:
    """``k`` labelled examples (half true, half false, drawn with ``seed``, shuffled), one per line as
    ``"<statement> This statement is: True"``, then the query.

    Pass training rows only: an example that is also scored would leak its label into the prompt.
    """
    check_number("k", k, kind=int, low=2)
    check_number("seed", seed, kind=int)
    truth = examples.truth.numpy()
    rng = np.random.default_rng(seed)
    need = {True: k - k // 2, False: k // 2}
    picked = []
    for label, n in need.items():
        rows = np.flatnonzero(truth == label)
        if len(rows) < n:
            raise ValueError(
                f"few_shot_prompt: {examples.name!r} has {len(rows)} {'true' if label else 'false'} "
                f"statements; k={k} needs {n}"
            )
        picked += rng.choice(rows, size=n, replace=False).tolist()
    order = rng.permutation(picked)
    lines = [f"{examples.texts[i]}{question}{answers[0] if truth[i] else answers[1]}\n" for i in order]
    return Prompt(f"few_shot_{k}", "".join(lines), question, tuple(answers))


def chat_prompt(tokenizer, *, instruction: str = INSTRUCTION, answers: tuple[str, str] = CHAT_ANSWERS) -> Prompt:
    """The instruct model's own chat template: one user turn (instruction, blank line, statement), and
    the assistant turn opened, so the answer is the assistant's first token.

    The template's text is taken as it is, BOS included where the template writes one: no second BOS
    is added by the model's rule.
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ValueError("this tokenizer has no chat template (a base model); use zero_shot_prompt or few_shot_prompt")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{instruction}\n\n{_SLOT}"}], add_generation_prompt=True, tokenize=False
    )
    prefix, suffix = text.split(_SLOT)
    return Prompt("chat", prefix, suffix, tuple(answers), model_bos=False)


@torch.no_grad()
def prompted_log_odds(
    model: TransformerBridge, statements: StatementSet | Sequence[str], prompt: Prompt, *, batch_size: int = 64
) -> Float[Tensor, " batch"]:
    """``logit(true answer) - logit(false answer)`` after ``prompt`` around each statement.

    The prefix (a few-shot block, a chat template's system turn) is run once; its keys and values are
    copied into every batch, so a long prefix costs about what the statements alone cost. Equal to the
    forward over the whole prompt's tokens (tests/test_prompts.py). A prompt with no prefix is
    :func:`~elk_lens.lm_output.output_log_odds` of ``statement + suffix``.
    """
    if not isinstance(prompt, Prompt):
        raise TypeError(f"prompt must be a Prompt (zero_shot_prompt, few_shot_prompt, chat_prompt); got {prompt!r}")
    check_number("batch_size", batch_size, kind=int, low=1)
    texts = statements.texts if isinstance(statements, StatementSet) else check_texts("statements", statements)
    bodies = [text + prompt.suffix for text in texts]
    if not prompt.prefix:
        return output_log_odds(model, bodies, answers=prompt.answers, batch_size=batch_size)
    answers = answer_token_ids(model, prompt.answers)
    prefix = _prefix_ids(model, prompt)
    body = model.tokenizer(bodies, add_special_tokens=False)["input_ids"]
    longest = len(prefix) + max(len(ids) for ids in body)
    if model.cfg.n_ctx is not None and longest > model.cfg.n_ctx:
        raise ValueError(
            f"prompt {prompt.name!r}: {longest} tokens (prefix {len(prefix)}) exceed the model's "
            f"context (n_ctx={model.cfg.n_ctx})"
        )
    device = input_device(model)
    cache = _prefix_cache(model, torch.tensor([prefix], device=device))
    order = sorted(range(len(body)), key=lambda i: len(body[i]))  # like lengths together: less padding
    out = torch.empty(len(body))
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(body[i]) for i in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), len(prefix) + width), dtype=torch.long)
        mask[:, : len(prefix)] = 1
        for j, i in enumerate(rows):
            ids[j, : len(body[i])] = torch.tensor(body[i])
            mask[j, len(prefix) : len(prefix) + len(body[i])] = 1
        batch_cache = copy.deepcopy(cache)
        batch_cache.batch_repeat_interleave(len(rows))
        last = torch.tensor([len(body[i]) - 1 for i in rows], device=device)
        with cache_reaches_attention(model):
            picked = answer_logits(
                model,
                ids.to(device),
                mask.to(device),
                (torch.arange(len(rows), device=device), last),
                answers,
                past_key_values=batch_cache,
            )
        out[rows] = (picked[:, 0] - picked[:, 1]).float().cpu()
    return out


@contextmanager
def cache_reaches_attention(model: TransformerBridge) -> Iterator[None]:
    """Hand the HuggingFace KV cache to the bridge's attention under the name it reads.

    TransformerLens 4.3's attention components read the cache from ``past_key_values``; transformers
    5.2x's decoder layers pass it as ``cache`` (the old name deprecated). Without this the cache is
    silently left empty and a cached forward attends to its new tokens alone (measured; the check in
    :func:`_prefix_cache` fails loudly if the cache stays empty).
    """

    def rename(module, args, kwargs):
        if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None:
            kwargs = {**kwargs, "past_key_values": kwargs["cache"]}
        return args, kwargs

    handles = [
        m.register_forward_pre_hook(rename, with_kwargs=True) for m in model.modules() if hasattr(m, "_update_kv_cache")
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _prefix_ids(model: TransformerBridge, prompt: Prompt) -> list[int]:
    ids = model.tokenizer(prompt.prefix, add_special_tokens=False)["input_ids"]
    bos = model.tokenizer.bos_token_id
    if prompt.model_bos and getattr(model.cfg, "default_prepend_bos", True) and bos is not None:
        ids = [bos, *ids]
    return ids


def _prefix_cache(model: TransformerBridge, prefix: Tensor) -> DynamicCache:
    """The prefix's keys and values in every layer (the forward stops before the unembedding)."""
    cache = DynamicCache(config=model.original_model.config)

    def stop(x: Tensor, *, hook) -> None:
        raise StopAtLayerException(x)

    with loud_hooks(model, [(UNEMBED_IN, stop)]), cache_reaches_attention(model):
        model(prefix, past_key_values=cache)
    if cache.get_seq_length() != prefix.shape[1]:
        raise RuntimeError(
            f"the prefix's key/value cache holds {cache.get_seq_length()} positions, not "
            f"{prefix.shape[1]}: this model's forward does not fill a HuggingFace cache"
        )
    return cache
