"""Shared tiny models for the test suite: a char tokenizer, a native bridge, and HF GPT-2 / GPT-NeoX / BERT dirs.

Every model is random-init from a config (no downloads) and tiny (d_model 32, 2 layers, vocab 48), so a
forward costs well under a millisecond per row. HF directories are written once per session under
pytest's tmp dir, with the char tokenizer's files copied in, and booted through ``elk_lens.models.load_model``.
"""

import os

# Fail fast instead of retrying the hub for ~23 s (docs/methods/transformer_lens_4_3.md §4.3): huggingface_hub
# reads this when it is first imported, so it must be set before transformers is imported below.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One intra-op thread in the processes the tests start too (notebook kernels, scripts), as in this one
# below: with two cores shared by two pytest-xdist workers, a kernel on 2 threads ran the drift notebook
# in 424 s, on 1 thread in 95 s (load average ~5, issue 14).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import importlib.util  # noqa: E402
import shutil  # noqa: E402
import string  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402
from tokenizers import Tokenizer, decoders, pre_tokenizers  # noqa: E402
from tokenizers import models as tk_models  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from elk_lens.models import load_model  # noqa: E402
from elk_lens.runner import run_analysis  # noqa: E402
from elk_lens.zoo import gguf as zoo_gguf  # noqa: E402

# Tiny models gain nothing from intra-op threads, and on busy cores the thread handoff dominates:
# a d_model=32 forward took 250 ms with 2 threads vs 2 ms with 1 while background jobs ran.
torch.set_num_threads(1)

VOCAB = 48  # the char tokenizer has 47 tokens (4 specials + 43 characters); one spare id
N_CTX = 24
D_MODEL = 32
N_LAYERS = 2
NATIVE_CFG = dict(d_model=D_MODEL, d_head=8, n_layers=N_LAYERS, n_ctx=N_CTX, d_vocab=VOCAB, act_fn="gelu", seed=0)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


# Modules whose tests share no module-scoped fixture and are long: under pytest-xdist each of their tests
# is a unit of work of its own; every other module is one unit, so its module-scoped fixtures (a finished
# analysis run) are built once, not once per worker.
ONE_BY_ONE = {
    f"tests/{m}.py" for m in ("test_faults", "zoo/test_gguf", "test_notebooks", "analyses/test_real_lm_glance")
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first (file order otherwise): under pytest-xdist the long ones (the real
    LMs, the notebooks) then spread over the workers, and none is left to run alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


if importlib.util.find_spec("xdist") is not None:  # make test: pytest -n 2 --no-loadscope-reorder
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        """xdist's ``loadscope`` with the units above, handed out in collection order. (``loadgroup``'s
        ``xdist_group`` marks would say the same, but pytest-xdist 3.8 marks them in a node attribute
        that pytest 9 no longer reads as the node id, so they group nothing.)"""

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if module in ONE_BY_ONE else module

    def pytest_xdist_make_scheduler(config, log) -> LoadScopeScheduling:
        return ModuleScheduling(config, log)


def make_char_tokenizer_dir(path: Path) -> Path:
    """Offline char-level tokenizer saved to disk (the bridge needs a ``from_pretrained``-loaded tokenizer)."""
    vocab = {"<pad>": PAD_ID, "<bos>": BOS_ID, "<eos>": EOS_ID, "<unk>": 3}
    for ch in string.ascii_lowercase + string.digits + " .,!?'\n":
        vocab.setdefault(ch, len(vocab))
    tk = Tokenizer(tk_models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tk.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(str(path))
    return path


def _save_hf(model_cls, config, path: Path, seed: int = 0) -> Path:
    with torch.random.fork_rng():  # seeded init without disturbing the global RNG of other tests
        torch.manual_seed(seed)
        model_cls(config).save_pretrained(str(path))
    return path


def boot_native(tok_dir: Path, dtype: torch.dtype = torch.float32, **overrides) -> TransformerBridge:
    """A fresh tiny native bridge (eval mode) with the char tokenizer; cheap (~0.05 s)."""
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    return TransformerBridge.boot_native({**NATIVE_CFG, **overrides}, tokenizer=tok, dtype=dtype).eval()


@pytest.fixture(scope="session")
def char_tok_dir(tmp_path_factory) -> Path:
    return make_char_tokenizer_dir(tmp_path_factory.mktemp("tok_char"))


@pytest.fixture(scope="session")
def native_model(char_tok_dir) -> TransformerBridge:
    """Shared native model: do not modify it (boot your own with ``boot_native`` to edit weights)."""
    return boot_native(char_tok_dir)


@pytest.fixture(scope="session")
def gpt2_notok_dir(tmp_path_factory) -> Path:
    """A tiny HF GPT-2 directory WITHOUT tokenizer files."""
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_embd=D_MODEL,
        n_layer=N_LAYERS,
        n_head=4,
        n_positions=N_CTX,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return _save_hf(GPT2LMHeadModel, cfg, tmp_path_factory.mktemp("hf_gpt2_notok"))


def _with_tokenizer(model_dir: Path, tok_dir: Path, dst: Path | None = None) -> Path:
    """Copy the tokenizer files into ``model_dir`` (or into a copy of it at ``dst``)."""
    if dst is not None:
        shutil.copytree(model_dir, dst, dirs_exist_ok=True)
        model_dir = dst
    shutil.copytree(tok_dir, model_dir, dirs_exist_ok=True)
    return model_dir


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory, gpt2_notok_dir, char_tok_dir) -> Path:
    return _with_tokenizer(gpt2_notok_dir, char_tok_dir, tmp_path_factory.mktemp("hf_gpt2"))


@pytest.fixture(scope="session")
def neox_dir(tmp_path_factory, char_tok_dir) -> Path:
    cfg = GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=D_MODEL,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        intermediate_size=4 * D_MODEL,
        max_position_embeddings=N_CTX,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )
    path = _save_hf(GPTNeoXForCausalLM, cfg, tmp_path_factory.mktemp("hf_neox"))
    return _with_tokenizer(path, char_tok_dir)


@pytest.fixture(scope="session")
def gemma3_dir(tmp_path_factory, char_tok_dir) -> Path:
    """A tiny HF Gemma 3 with the 270M model's block: (1 + w) RMSNorms before and after attention and MLP,
    q/k norms, grouped-query attention (4 query heads on 2 key/value heads, head_dim 8), GeGLU, a
    √d_model embedding scale, and sliding and full attention layers (window 4)."""
    cfg = Gemma3TextConfig(
        vocab_size=VOCAB,
        hidden_size=D_MODEL,
        num_hidden_layers=N_LAYERS + 1,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=2 * D_MODEL,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        max_position_embeddings=N_CTX,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    path = _save_hf(Gemma3ForCausalLM, cfg, tmp_path_factory.mktemp("hf_gemma3"))
    return _with_tokenizer(path, char_tok_dir)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory, char_tok_dir) -> Path:
    """A tiny HF Llama with SmolLM2's block: grouped-query attention (4 query heads on 2 key/value heads),
    RMSNorm pre-norm, rotary positions, SwiGLU MLP, and the char tokenizer."""
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=D_MODEL,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=2 * D_MODEL,
        max_position_embeddings=N_CTX,
        tie_word_embeddings=True,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    path = _save_hf(LlamaForCausalLM, cfg, tmp_path_factory.mktemp("hf_llama"))
    return _with_tokenizer(path, char_tok_dir)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory, char_tok_dir) -> Path:
    """A tiny BERT encoder. Saved as BertForMaskedLM so the MLM head is stored too: a BertModel
    checkpoint also boots (as BertForMaskedLM) but with a head re-randomised on every boot (§4.2)."""
    cfg = BertConfig(
        vocab_size=VOCAB,
        hidden_size=D_MODEL,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        intermediate_size=4 * D_MODEL,
        max_position_embeddings=N_CTX,
        pad_token_id=PAD_ID,
    )
    path = _save_hf(BertForMaskedLM, cfg, tmp_path_factory.mktemp("hf_bert"))
    return _with_tokenizer(path, char_tok_dir)


@pytest.fixture(scope="session")
def gpt2_model(gpt2_dir) -> TransformerBridge:
    return load_model(str(gpt2_dir))


@pytest.fixture(scope="session")
def neox_model(neox_dir) -> TransformerBridge:
    return load_model(str(neox_dir))


@pytest.fixture(scope="session")
def bert_model(bert_dir) -> TransformerBridge:
    return load_model(str(bert_dir))


def _missing_package(name: str) -> str | None:
    """The PyPI package that zoo:NAME (a GGUF model) comes from, where it is not installed."""
    entry = zoo_gguf.GGUF_MODELS[name]
    if entry.assembler is not None:
        return None if importlib.util.find_spec(entry.assembler) is not None else entry.package
    try:
        metadata.distribution(entry.package)
    except metadata.PackageNotFoundError:
        return entry.package
    return None


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory) -> Path:
    """A directory of this test run that every pytest-xdist worker sees (each worker's own basetemp is a
    subdirectory of the run's)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session", autouse=True)
def elk_lens_cache(shared_tmp) -> Iterator[Path]:
    """Every model converted in this test run (the real LMs from their GGUF packages: here, in notebook
    kernels, in scripts) goes into one cache of this run, never the user's: each run checks the conversion
    from the packaged file up, once per model (elk_lens.zoo.gguf locks an entry while it is written, so
    workers converting the same GGUF take turns). A cache named by ``ELK_LENS_CACHE`` in the environment
    is used instead, e.g. ``ELK_LENS_CACHE=~/.cache/elk-lens make test`` to reuse earlier conversions."""
    cache = Path(os.environ.get("ELK_LENS_CACHE") or shared_tmp / "elk_lens_cache").expanduser()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ELK_LENS_CACHE", str(cache))
        yield cache


# what one run writes under pytest's temporary directory at its peak (measured: 2.3 GB, most of it the two
# real LMs converted from their GGUF packages, ~1.8 GB, removed when the run ends)
_TMP_NEEDED_GB = 2.5


def pytest_sessionstart(session: pytest.Session) -> None:
    """A disk too full for the run fails it here, with the numbers, not as hundreds of ``OSError: No space
    left on device`` in fixtures (CI, 2026-12-04)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    root = session.config._tmp_path_factory.getbasetemp()
    free = shutil.disk_usage(root).free / 2**30
    if free < _TMP_NEEDED_GB:
        pytest.exit(
            f"the test run needs ~{_TMP_NEEDED_GB} GB free under its temporary directory {root.parent}; "
            f"{free:.2f} GB are free there. Free some, or point TMPDIR (or --basetemp) at a disk with room",
            returncode=3,
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's converted real LMs (~1.8 GB) go when the run ends: pytest keeps its last three temporary
    directories. Under xdist the controller removes them, once every worker is done."""
    if not os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("ELK_LENS_CACHE"):
        shutil.rmtree(session.config._tmp_path_factory.getbasetemp() / "elk_lens_cache", ignore_errors=True)


@pytest.fixture(scope="session")
def real_lm() -> Callable[[str], tuple[TransformerBridge, Path]]:
    """``real_lm(name)``: the bridge of zoo:NAME (a real LM from its GGUF package) and its GGUF file,
    loaded once per session (per worker); skips naming the package where it is not installed (``make
    test`` installs both)."""
    loaded: dict[str, tuple[TransformerBridge, Path]] = {}

    def load(name: str) -> tuple[TransformerBridge, Path]:
        if name not in loaded:
            package = _missing_package(name)
            if package is not None:
                install = zoo_gguf.GGUF_MODELS[name].card["notes"]["install"]
                pytest.skip(f"zoo:{name} needs the PyPI package {package}: {install}")
            loaded[name] = load_model(f"zoo:{name}"), zoo_gguf.gguf_file(name)
        return loaded[name]

    return load


@pytest.fixture(scope="session")
def truth_run(shared_tmp) -> tuple[Path, Path]:
    """The small truth_generalization run of tests/analyses/test_truth_analysis.py (its ``SPEC``, MiniLM on five
    truth datasets) made once per test run: (spec, run directory). Its analysis test and the browser
    check of its report read the same run; the workers take turns through a lock, the first runs it."""
    from tiny_specs import TRUTH_SPEC as SPEC

    root = shared_tmp / "truth_run"
    root.mkdir(exist_ok=True)
    spec, done = root / "spec.toml", root / "run_dir.txt"
    with FileLock(root / ".lock"):
        if not done.is_file():
            spec.write_text(SPEC)
            done.write_text(str(run_analysis(spec, runs_root=root / "runs")))
    return spec, Path(done.read_text())
