"""Measure the real LMs of the zoo and write the numbers into their cards (``elk_lens/zoo/measured/NAME.json``).

For each of ``zoo:smollm2-135m`` and ``zoo:gemma3-270m``: the cold load (GGUF -> cached safetensors
directory, in a fresh cache) and the warm load, peak resident memory, the bridge-vs-transformers max
|logit| gap on the same GGUF, and the perplexity of a fixed English text with the model's own BOS rule
and with the opposite one (why the rule matters).

    python benchmarks/real_lm_cards.py                 # both models; about 2-4 min on 2 cores
    python benchmarks/real_lm_cards.py --models smollm2-135m
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM

from elk_lens import load_model
from elk_lens._atomic import atomic_write_text
from elk_lens.zoo import ZOO_DIR
from elk_lens.zoo.gguf import GGUF_MODELS, gguf_file

TEXT = (
    "The river rises in the hills to the north and flows south through farmland for about two hundred "
    "kilometres before it reaches the sea. In spring, melting snow raises the water level, and the town "
    "at its mouth has built long stone walls to protect the harbour. Most people in the region work in "
    "agriculture or fishing, although tourism has grown quickly since the new railway line opened."
)


def _perplexity(model, prepend_bos: bool) -> float:
    ids = model.to_tokens([TEXT], prepend_bos=prepend_bos)
    with torch.no_grad():
        logp = model(ids).log_softmax(-1)
    start = 1 if prepend_bos else 0  # score the text's own tokens, never the BOS
    nll = -logp[0, start:-1].gather(-1, ids[0, start + 1 :, None]).mean()
    return round(float(nll.exp()), 2)


def measure(name: str) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ELK_LENS_CACHE"] = cache
        gguf = gguf_file(name)
        started = time.perf_counter()
        load_model(f"zoo:{name}")
        cold = time.perf_counter() - started
        started = time.perf_counter()
        model = load_model(f"zoo:{name}")
        warm = time.perf_counter() - started
        own = model.cfg.default_prepend_bos
        ids = model.to_tokens([TEXT])
        hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
        with torch.no_grad():
            gap = float((model(ids) - hf(ids).logits).abs().max())
        return {
            "load seconds (first: GGUF conversion into the cache)": round(cold, 1),
            "load seconds (cached)": round(warm, 1),
            "bridge vs transformers max |logit gap| (same GGUF, float32)": float(f"{gap:.2e}"),
            f"perplexity of a fixed English paragraph ({ids.shape[1]} tokens), own BOS rule": _perplexity(model, own),
            "perplexity with the opposite BOS rule": _perplexity(model, not own),
            "peak resident memory, MB (load, both forwards, transformers beside it)": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            ),
            "torch threads": torch.get_num_threads(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(GGUF_MODELS), choices=list(GGUF_MODELS))
    args = parser.parse_args()
    if len(args.models) > 1:  # one process per model: peak memory is per process
        for name in args.models:
            subprocess.run([sys.executable, __file__, "--models", name], check=True)
        return
    for name in args.models:
        numbers = measure(name)
        atomic_write_text(ZOO_DIR / "measured" / f"{name}.json", json.dumps(numbers, indent=2) + "\n")
        print(json.dumps({name: numbers}, indent=2))


if __name__ == "__main__":
    main()
