"""`capture`: values equal `run_with_cache`, padding-aware positions, early exit, loud hooks and bad input.

The oracle is TransformerLens's own ``run_with_cache`` on token ids padded *by hand* here (from
``to_tokens`` of each text alone), so ``elk_lens.capturing.tokenize`` and the padding-aware read
positions are checked too, not only the hook plumbing.
"""

import pytest
import torch
from conftest import N_CTX, boot_native
from transformers import AutoTokenizer

from elk_lens._hooks import loud_hooks
from elk_lens.capturing import capture, length_batches, tokenize
from elk_lens.data.statements import StatementSet
from elk_lens.sites import SITE_KINDS, Site

MODELS = ("native", "gpt2", "neox", "bert")
SIDES = ("right", "left")
# different lengths; the 2nd batch of 2 is narrower than the whole set (exercises re-padding for "all")
TEXTS = ("hello world", "ab", "x y z!", "cat")
# A text run alone vs inside a padded batch runs matmuls of different shapes, whose kernels sum in a
# different order: measured max drift 7.2e-7 (native), 1.5e-8 (GPT-2), 1.1e-8 (NeoX), 6e-8 (BERT) in
# float32, and < 1e-15 in float64 (test_alone_gap_is_float32_rounding), so it is rounding, not a bug.
BATCH_SHAPE_TOL = 1e-5
F64_TOL = 1e-12
# Residual kinds each architecture has: NeoX (parallel attention + MLP) has no resid_mid.
EXPECTED_KINDS = {"native": SITE_KINDS, "gpt2": SITE_KINDS, "bert": SITE_KINDS, "neox": ("resid_pre", "resid_post")}


def get_model(request, name):
    return request.getfixturevalue(f"{name}_model")


def all_sites(model) -> list[str]:
    kinds = [k for k in SITE_KINDS if f"blocks.0.hook_{k}" in model.hook_dict]
    return [f"blocks.{layer}.hook_{k}" for layer in range(model.cfg.n_layers) for k in kinds]


def pad_by_hand(model, texts, side):
    """Token ids of each text alone (same BOS rule as ``to_tokens``), padded on ``side`` with a 0/1 mask."""
    rows = [model.to_tokens(t, move_to_device=False)[0] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), model.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        cols = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
        ids[i, cols], mask[i, cols] = r, 1
    return ids, mask


@torch.no_grad()
def cached(model, ids, mask, sites) -> torch.Tensor:
    """``run_with_cache`` on the same padded tokens: [n, n_sites, pos, d_model]."""
    _, cache = model.run_with_cache(ids, attention_mask=mask, names_filter=list(sites))
    return torch.stack([cache[s] for s in sites], 1)


def real_cols(mask_row: torch.Tensor) -> torch.Tensor:
    return mask_row.nonzero().squeeze(1)


def assert_equal_per_site(got, want, sites, what):
    for i, site in enumerate(sites):
        drift = (got[:, i] - want[:, i]).abs().max().item()
        assert torch.equal(got[:, i], want[:, i]), f"{what}: {site} differs from run_with_cache (max drift {drift:.2e})"


class CountForwards:
    """A forward hook that counts its calls (attach with ``model.hooks``)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, tensor, *, hook):
        self.calls += 1


# --------------------------------------------------------------------------- tokenization


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("name", MODELS)
def test_tokenize_pads_like_each_text_alone(request, name, side):
    model = get_model(request, name)
    tokens = tokenize(model, TEXTS, side)
    ids, mask = pad_by_hand(model, TEXTS, side)
    assert torch.equal(tokens.ids, ids) and torch.equal(tokens.mask, mask)
    assert len(set(mask.sum(1).tolist())) == len(TEXTS), "the texts must have different lengths"


# --------------------------------------------------------------------------- values == run_with_cache


def test_every_architecture_has_the_expected_residual_kinds(request):
    for name in MODELS:
        model = get_model(request, name)
        kinds = tuple(k for k in SITE_KINDS if f"blocks.0.hook_{k}" in model.hook_dict)
        assert kinds == EXPECTED_KINDS[name], name
    assert request.getfixturevalue("bert_model").cfg.attention_dir == "bidirectional"


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("name", MODELS)
def test_last_token_equals_run_with_cache(request, name, side):
    model = get_model(request, name)
    sites = all_sites(model)
    acts = capture(model, TEXTS, sites, padding_side=side)
    ids, mask = pad_by_hand(model, TEXTS, side)
    ref = cached(model, ids, mask, sites)
    last = torch.stack([real_cols(m)[-1] for m in mask])
    assert acts.values.shape == (len(TEXTS), len(sites), model.cfg.d_model)
    assert [s.name for s in acts.sites] == sites
    assert_equal_per_site(acts.values, ref[torch.arange(len(TEXTS)), :, last], sites, f"{name}/{side}/last")


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("name", MODELS)
def test_last_token_matches_each_text_run_alone(request, name, side):
    """Padding is invisible: the bridge masks pads and derives position ids from the attention mask
    (also for GPT-2 / BERT absolute positions and left padding), so each row equals its text run alone."""
    model = get_model(request, name)
    sites = all_sites(model)
    acts = capture(model, TEXTS, sites, padding_side=side)
    for row, text in enumerate(TEXTS):
        alone = cached(model, model.to_tokens(text, move_to_device=False), None, sites)[0, :, -1]
        drift = (acts.values[row] - alone).abs().max().item()
        assert drift < BATCH_SHAPE_TOL, f"{name}/{side}: row {row} ({text!r}) drifts {drift:.2e} from its run alone"


def test_alone_gap_is_float32_rounding(char_tok_dir):
    """The batched-vs-alone gap vanishes in float64: it is summation order, not leaked padding."""
    model = boot_native(char_tok_dir, dtype=torch.float64)
    sites = all_sites(model)
    acts = capture(model, TEXTS, sites, padding_side="left", dtype=torch.float64)
    for row, text in enumerate(TEXTS):
        alone = cached(model, model.to_tokens(text, move_to_device=False), None, sites)[0, :, -1]
        drift = (acts.values[row] - alone).abs().max().item()
        assert drift < F64_TOL, f"row {row}: float64 drift {drift:.2e}"


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("name", MODELS)
def test_int_position_counts_real_tokens(request, name, side):
    model = get_model(request, name)
    sites = all_sites(model)
    ids, mask = pad_by_hand(model, TEXTS, side)
    ref = cached(model, ids, mask, sites)
    rows = torch.arange(len(TEXTS))
    shortest = int(mask.sum(1).min())
    assert shortest >= 2  # so that 0, 1, -1, -2 are all valid
    for position in (0, 1, -1, -shortest):
        acts = capture(model, TEXTS, sites, position=position, padding_side=side)
        col = torch.stack([real_cols(m)[position] for m in mask])
        assert_equal_per_site(acts.values, ref[rows, :, col], sites, f"{name}/{side}/position={position}")
    last = capture(model, TEXTS, sites, padding_side=side)
    assert torch.equal(capture(model, TEXTS, sites, position=-1, padding_side=side).values, last.values)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("name", MODELS)
def test_all_positions_equal_run_with_cache_on_real_tokens(request, name, side):
    model = get_model(request, name)
    sites = all_sites(model)
    ids, mask = pad_by_hand(model, TEXTS, side)
    ref = cached(model, ids, mask, sites)
    acts = capture(model, TEXTS, sites, position="all", padding_side=side)
    assert acts.values.shape == (len(TEXTS), len(sites), ids.shape[1], model.cfg.d_model)
    assert torch.equal(acts.mask, mask)
    real = mask.bool()
    assert_equal_per_site(acts.values.transpose(1, 2)[real], ref.transpose(1, 2)[real], sites, f"{name}/{side}/all")


@pytest.mark.parametrize("side", SIDES)
def test_all_positions_with_small_batches_are_repadded_on_the_padding_side(native_model, side):
    """batch_size=2: rows run in length batches (shortest first); each narrower batch is re-padded to the
    set's width on ``side`` and equals ``run_with_cache`` on that batch."""
    sites = all_sites(native_model)
    ids, mask = pad_by_hand(native_model, TEXTS, side)
    acts = capture(native_model, TEXTS, sites, position="all", padding_side=side, batch_size=2)
    assert acts.values.shape[2] == ids.shape[1] and torch.equal(acts.mask, mask)
    batches = list(length_batches(mask, 2))
    for index in batches:
        sub_ids, sub_mask = pad_by_hand(native_model, [TEXTS[i] for i in index], side)
        ref = cached(native_model, sub_ids, sub_mask, sites)
        for r, row in enumerate(index.tolist()):
            got = acts.values[row][:, real_cols(mask[row])]
            want = ref[r][:, real_cols(sub_mask[r])]
            assert torch.equal(got, want), f"{side}: row {row} differs from its own batch's run_with_cache"
    narrow = pad_by_hand(native_model, [TEXTS[i] for i in batches[0]], side)[0]
    assert ids.shape[1] > narrow.shape[1], "the 1st (shortest) batch must be narrower than the set"


def test_statement_set_input_and_site_forms_agree(native_model):
    stmts = StatementSet(list(TEXTS), torch.tensor([True, False, True, False]))
    a = capture(native_model, stmts, [Site(1, "resid_pre"), "resid_post.0"])
    b = capture(native_model, list(TEXTS), ["blocks.1.hook_resid_pre", "blocks.0.hook_resid_post"])
    assert torch.equal(a.values, b.values)
    assert torch.equal(a.at("resid_pre.1"), b.values[:, 0])


# --------------------------------------------------------------------------- early exit


@pytest.mark.parametrize("name", MODELS)
def test_forward_stops_after_the_deepest_requested_site(request, name):
    """Nothing after the deepest site runs, also on BERT whose forward ignores ``stop_at_layer``."""
    model = get_model(request, name)
    kinds = EXPECTED_KINDS[name]
    # deepest site listed first, to check the depth ordering rather than the list order
    sites = [f"blocks.0.hook_{kinds[-1]}", *[f"blocks.0.hook_{k}" for k in kinds[:-1]]]
    before = CountForwards()  # control: a hook before the deepest site does fire
    after = {n: CountForwards() for n in ("blocks.1.hook_resid_pre", "blocks.1.hook_resid_post", "unembed.hook_in")}
    hooks = [("hook_embed", before), *after.items()]

    with model.hooks(fwd_hooks=hooks):
        model(model.to_tokens(list(TEXTS)))  # control: without capture every counter fires
    assert before.calls == 1 and all(c.calls == 1 for c in after.values())

    before.calls = 0
    for c in after.values():
        c.calls = 0
    with model.hooks(fwd_hooks=hooks):
        acts = capture(model, TEXTS, sites, batch_size=2)
    assert before.calls == 2, "one forward per batch of 2"
    assert {n: c.calls for n, c in after.items()} == dict.fromkeys(after, 0)
    assert acts.values.shape[:2] == (len(TEXTS), len(kinds))


# --------------------------------------------------------------------------- loud hooks


def test_unknown_hook_name_raises_before_any_forward(native_model):
    embed, fn = CountForwards(), CountForwards()
    ids = native_model.to_tokens(list(TEXTS))
    with (
        native_model.hooks(fwd_hooks=[("hook_embed", embed)]),
        pytest.raises(KeyError, match=r"hook points \['blocks\.9\.hook_resid_pre'\] do not exist"),
        loud_hooks(native_model, [("blocks.0.hook_resid_pre", fn), ("blocks.9.hook_resid_pre", fn)]),
    ):
        native_model(ids)
    assert embed.calls == 0 and fn.calls == 0


@pytest.mark.parametrize(
    "silent_name, forward_kwargs",
    [
        # listed in hook_dict and accepted by model.hooks, but the native attention never calls it
        ("blocks.0.attn.hook_hidden_states", {}),
        # a block the forward never reaches (forward(stop_at_layer=1) still fires blocks.1.hook_resid_pre)
        ("blocks.1.hook_resid_post", {"stop_at_layer": 1}),
    ],
)
def test_hook_that_never_fires_raises(native_model, silent_name, forward_kwargs):
    assert silent_name in native_model.hook_dict
    fired, silent = CountForwards(), CountForwards()
    ids = native_model.to_tokens(list(TEXTS))
    with (
        pytest.raises(RuntimeError, match=rf"hooks never fired: \['{silent_name}'\]"),
        loud_hooks(native_model, [("blocks.0.hook_resid_pre", fired), (silent_name, silent)]),
    ):
        native_model(ids, **forward_kwargs)
    assert fired.calls == 1 and silent.calls == 0
    native_model(ids)  # the hooks were removed on the way out
    assert fired.calls == 1


def test_gated_hook_point_is_refused_loudly(native_model):
    """``blocks.0.hook_mlp_in`` is listed in hook_dict but gated off (use_hook_mlp_in=False). TL 4.3
    refuses to attach it (ValueError); were it accepted, it would never fire and loud_hooks would raise."""
    assert "blocks.0.hook_mlp_in" in native_model.hook_dict
    with (
        pytest.raises((ValueError, RuntimeError), match=r"blocks\.0\.hook_mlp_in"),
        loud_hooks(native_model, [("blocks.0.hook_mlp_in", CountForwards())]),
    ):
        native_model(native_model.to_tokens(list(TEXTS)))


def test_hooks_are_removed_when_the_forward_raises(native_model):
    def boom(tensor, *, hook):
        raise ZeroDivisionError("inside the forward")

    ids = native_model.to_tokens(list(TEXTS))
    with (
        pytest.raises(ZeroDivisionError, match="inside the forward"),
        loud_hooks(native_model, [("blocks.0.hook_resid_pre", boom)]),
    ):
        native_model(ids)
    native_model(ids)  # no leaked hook: would raise again


# --------------------------------------------------------------------------- bad input

BAD_INPUTS = {
    "layer out of range": (
        dict(sites=["resid_pre.2"]),
        ValueError,
        r"layer 2 is out of range: the model has layers 0\.\.1",
    ),
    "unknown site kind": (dict(sites=["blocks.0.hook_attn_out"]), ValueError, r"unknown site kind 'attn_out'"),
    "unknown short kind": (dict(sites=["resid.0"]), ValueError, r"unknown site kind 'resid'; valid: \('resid_pre'"),
    "unparseable site": (dict(sites=["resid_pre"]), ValueError, r"cannot parse site 'resid_pre'; write 'blocks\.L"),
    "negative layer": (dict(sites=["blocks.-1.hook_resid_pre"]), ValueError, r"cannot parse site"),
    "no sites": (dict(sites=[]), ValueError, r"no sites given"),
    "position beyond shortest": (
        dict(position=3),
        ValueError,
        r"position 3 is beyond the sequence: the shortest statement has 3 tokens \(valid: -3\.\.2",
    ),
    "negative position beyond shortest": (dict(position=-4), ValueError, r"position -4 is beyond the sequence"),
    "unknown position": (dict(position="first"), ValueError, r"position must be 'last', 'all' or an int, got 'first'"),
    "empty statement list": (dict(texts=[]), ValueError, r"no statements to capture: the statement list is empty"),
    "longer than n_ctx": (
        dict(texts=["ab", "a" * N_CTX]),
        ValueError,
        rf"statement 1 is {N_CTX + 1} tokens long, longer than the model's context \(n_ctx={N_CTX}\)",
    ),
    "bad padding side": (dict(padding_side="middle"), ValueError, r"padding_side must be 'left' or 'right'"),
    "zero batch size": (dict(batch_size=0), ValueError, r"batch_size must lie in \[1, inf\); got 0"),
    "all positions with a cache": (
        dict(position="all", cache_dir="unused"),
        ValueError,
        r"position='all' cannot be cached",
    ),
    "bare string statements": (dict(texts="hello"), TypeError, r"statements must be a list of statements"),
    "non-str statement": (dict(texts=["ab", None]), TypeError, r"statements\[1\] must be a str; got NoneType"),
    "unknown dtype name": (dict(dtype="half"), ValueError, r"dtype must be a floating torch dtype or its name"),
    "bool position": (dict(position=True), TypeError, r"position must be 'last', 'all' or an int; got bool True"),
    "float batch size": (dict(batch_size=8.0), TypeError, r"batch_size must be an int; got 8\.0"),
    "site not a name": (dict(sites=[0]), TypeError, r"site 0 must be a Site or a name"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_a_clear_error_before_any_forward(native_model, case):
    kwargs, exc, match = BAD_INPUTS[case]
    kwargs = dict(kwargs)
    texts, sites = kwargs.pop("texts", ["ab", "hello"]), kwargs.pop("sites", ["resid_pre.0"])
    embed = CountForwards()
    with native_model.hooks(fwd_hooks=[("hook_embed", embed)]), pytest.raises(exc, match=match):
        capture(native_model, texts, sites, **kwargs)
    assert embed.calls == 0


def test_resid_mid_on_neox_names_the_valid_kinds(neox_model):
    with pytest.raises(KeyError, match=r"blocks\.1\.hook_resid_mid does not exist on this model.*GPT-NeoX"):
        capture(neox_model, ["ab"], ["resid_mid.1"])
    with pytest.raises(KeyError, match=r"valid kinds here: \['resid_pre', 'resid_post'\]"):
        capture(neox_model, ["ab"], ["resid_mid.1"])


def test_empty_text_without_bos_raises(neox_model):
    """NeoX prepends no BOS, so "" has no token at all: there is nothing to read (it used to read a pad)."""
    assert neox_model.to_tokens("ab").shape[1] == 2  # no BOS on NeoX
    with pytest.raises(ValueError, match=r"statement 1 has no tokens"):
        capture(neox_model, ["ab", ""], ["resid_pre.1"])


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("name", ["native_model", "gpt2_model", "neox_model", "bert_model"])
def test_tokenize_ids_equal_to_tokens(request, name, side):
    """The Rust fast path and the to_tokens fallback give to_tokens's ids, pads included."""
    model = request.getfixturevalue(name)
    texts = ["ab", "hello world", "a", "the cat sat"]
    ours = tokenize(model, texts, side)
    expected = model.to_tokens(texts, padding_side=side, truncate=False, move_to_device=False)
    assert torch.equal(ours.ids, expected)
    assert ours.mask.sum().item() == sum(len(model.to_tokens(t, truncate=False)[0]) for t in texts)


def test_tokenizer_state_from_an_earlier_call_does_not_truncate(native_model):
    """The wrapper leaves truncation/padding set on the Rust tokenizer; tokenize must not inherit it."""
    native_model.to_tokens(["ab", "a" * N_CTX], truncate=True, padding_side="left")  # sets both on the backend
    with pytest.raises(ValueError, match=rf"statement 1 is {N_CTX + 1} tokens long"):
        capture(native_model, ["ab", "a" * N_CTX], ["resid_pre.0"])
    assert tokenize(native_model, ["ab", "hello"]).mask.sum().item() == 3 + 6


def test_token_outside_the_embedding_raises_before_any_forward(char_tok_dir):
    """A tokenizer with more tokens than the model's embedding (an added special token): a clear error
    naming the statement, the id and d_vocab instead of an IndexError inside the forward."""
    model = boot_native(char_tok_dir, d_vocab=len(AutoTokenizer.from_pretrained(str(char_tok_dir))))
    model.tokenizer.add_special_tokens({"additional_special_tokens": ["<sep>"]})
    sep = model.tokenizer.convert_tokens_to_ids("<sep>")
    embed = CountForwards()
    match = rf"statement 2 has token id {sep} \('<sep>'\), outside the model's embedding \(d_vocab={sep}; valid ids"
    with model.hooks(fwd_hooks=[("hook_embed", embed)]), pytest.raises(ValueError, match=match):
        capture(model, ["ab", "cd", "e<sep>"], ["resid_pre.0"])
    assert embed.calls == 0


def test_dtype_by_name_equals_the_torch_dtype(native_model):
    by_name = capture(native_model, list(TEXTS), ["resid_pre.1"], dtype="torch.bfloat16")
    assert by_name.values.dtype == torch.bfloat16 and by_name.meta["dtype"] == "bfloat16"
    assert torch.equal(by_name.values, capture(native_model, list(TEXTS), ["resid_pre.1"], dtype=torch.bfloat16).values)
