"""A first LoRA quirky fine-tune of SmolLM2-135M on quirky cities (hemisphere): does each character learn
its own labels? Resumable (``fine_tune`` resumes from its state; the evaluation is written last).

    OMP_NUM_THREADS=1 python benchmarks/real_lm_quirky_lora.py --out runs/smollm2-quirky-lora-s0 --steps 480 --seed 0

Prints and writes ``accuracy.json``: each character's answer accuracy on the val and test splits against
its own labels and against truth, at the base model and at the end, with the wall times. The run length
and learning rate are judged on val; test is reported, never tuned on.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from elk_lens._atomic import atomic_write_text
from elk_lens.lm_output import output_log_odds
from elk_lens.lora import LoraConfig
from elk_lens.models import load_model
from elk_lens.quirky.cities import quirky_cities
from elk_lens.quirky.paired import ANSWERS
from elk_lens.train import FineTuneConfig, fine_tune

BASE = "zoo:smollm2-135m"


def accuracy(model, test) -> dict:
    says_true = (output_log_odds(model, test, answers=ANSWERS, batch_size=32) > 0).numpy()
    out = {}
    for who in ("Alice", "Bob"):
        rows = test.column("character") == who
        out[f"{who} vs own label"] = round(float((says_true == test.column("label"))[rows].mean()), 4)
        out[f"{who} vs truth"] = round(float((says_true == test.column("alice_label"))[rows].mean()), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/smollm2-quirky-lora"))
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--test-rows", type=int, default=300)
    parser.add_argument("--val-rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    train = quirky_cities(args.rows, task="hemisphere", split="train", seed=args.seed)
    test = quirky_cities(args.test_rows, task="hemisphere", split="test", seed=args.seed)
    val = quirky_cities(args.val_rows, task="hemisphere", split="val", seed=args.seed)
    model = load_model(BASE)
    started = time.time()
    base = {"val": accuracy(model, val), "test": accuracy(model, test)}
    print("base model:", base, flush=True)
    config = FineTuneConfig(steps=args.steps, lr=args.lr, batch_size=16, seed=args.seed, answers=ANSWERS)
    traj = fine_tune(
        model,
        train,
        torch.as_tensor(train.column("label")),
        args.out / "trajectory",
        base_spec=BASE,
        config=config,
        lora=LoraConfig(),
    )
    trained = time.time()
    final = traj.model_at(len(traj) - 1)
    end = {"val": accuracy(final, val), "test": accuracy(final, test)}
    print("after LoRA:", end, flush=True)
    result = {
        "base": base,
        "end": end,
        "steps": args.steps,
        "lr": args.lr,
        "seed": args.seed,
        "train_rows": len(train),
        "test_rows": len(test),
        "val_rows": len(val),
        "history": traj.info.get("history", [])[-5:],
        "seconds": {"train_and_base_eval": round(trained - started, 1), "end_eval": round(time.time() - trained, 1)},
    }
    atomic_write_text(args.out / "accuracy.json", json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
