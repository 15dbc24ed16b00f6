"""Specs and the CLI: run names that would leave the runs directory, spec values that passed the spec
check and failed much later (a KeyError, a cryptic error, or a silent NaN), and bad command lines.

Every case stops at the spec check or at ``run_analysis``'s checks, before any model is loaded. The
run-name cases point a circuits spec at a broken trajectory, so that a name slipping through would
fail fast (and not start a fine-tuning run).
"""

import contextlib
import importlib.util
import io
from pathlib import Path

from bad_inputs import Case, Env
from elk_lens.cli import main
from elk_lens.runner import load_spec, run_analysis

NAME_RULE = r"letters, digits, '\.', '_' and '-'"


def _spec(env: Env, body: str, name: str = "bad") -> Path:
    path = env.tmp / "spec.toml"
    path.write_text(f"name = {name!r}\n{body}" if "name =" not in body else body)
    return path


def _checked(analysis: str, body: str):
    """The spec check of ``analysis`` on a spec holding ``body`` (what ``run_analysis`` runs first)."""

    def run(env: Env):
        return load_spec(_spec(env, f'analysis = "{analysis}"\n{body}'))[0]

    return run


def _fast_failing(env: Env, name: str) -> Path:
    """A circuits spec whose run would fail at once (its trajectory is empty), named ``name``."""
    (env.tmp / "traj").mkdir()
    (env.tmp / "traj" / "trajectory.json").write_text("{}")
    body = f'name = {name!r}\nanalysis = "circuits"\n[circuits]\ntrajectory = {str(env.tmp / "traj")!r}\n'
    return _spec(env, body)


def _run_named(name: str, run_name: str | None = None):
    def run(env: Env):
        out = run_analysis(_fast_failing(env, name), runs_root=env.tmp / "runs", run_name=run_name)
        raise AssertionError(f"the run went ahead, into {out}")

    return run


def _absolute(env: Env):
    return _run_named(str(env.tmp / "elsewhere"))(env)


def _cli(*argv: str):
    def run(env: Env):
        return main([a.replace("{tmp}", str(env.tmp)) for a in argv])

    return run


def _cli_run_named_with_a_slash(env: Env):
    return main(["run", str(_fast_failing(env, "x")), "--runs", str(env.tmp / "runs"), "--name", "a/b"])


def _cli_run_with_runs_a_file(env: Env):
    (env.tmp / "runs").write_text("a file, not a directory")
    return main(["run", str(_fast_failing(env, "x")), "--runs", str(env.tmp / "runs")])


def _cli_run_on_a_missing_device(env: Env):
    return main(["run", str(_fast_failing(env, "x")), "--runs", str(env.tmp / "runs"), "--device", "cuda:7"])


def _cli_spec_is_a_directory(env: Env):
    return main(["run", str(env.tmp), "--runs", str(env.tmp / "runs")])


def _spec_not_utf8(env: Env):
    path = env.tmp / "weights.toml"
    path.write_bytes(b"\x80\x03PK\xff\xfe binary, not a spec")
    return load_spec(path)


def _quoted_dotted_key(env: Env):
    return load_spec(_spec(env, 'analysis = "quirky_elk"\n"model.spec" = "zoo:quirky-arith-base"\n'))


def _hook_args(script: str, *argv: str):
    """A hook script's argument check; argparse prints the message, so it is raised here as the error."""

    def run(env: Env):
        spec = importlib.util.spec_from_file_location(script, Path(__file__).parents[2] / "hooks" / f"{script}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
            return module.parse_args([a.replace("{tmp}", str(env.tmp)) for a in argv])
        raise ValueError(err.getvalue())

    return run


CASES = [
    # run names: nothing may be written outside the runs directory
    Case(
        "specs/run-name-dotdot",
        _run_named("../escaped"),
        ValueError,
        rf"config key 'name'.*'\.\./escaped'.*{NAME_RULE}",
        finding=True,
    ),
    Case(
        "specs/run-name-absolute", _absolute, ValueError, rf"config key 'name'.*elsewhere'.*{NAME_RULE}", finding=True
    ),
    Case(
        "specs/cli-name-with-slash",
        _cli_run_named_with_a_slash,
        SystemExit,
        rf"--name.*'a/b'.*{NAME_RULE}",
        finding=True,
    ),
    Case("specs/run-name-arg-dotdot", _run_named("ok", ".."), ValueError, rf"run_name.*'\.\.'.*{NAME_RULE}"),
    Case("specs/run-name-empty", _run_named(""), ValueError, rf"config key 'name'.*''.*{NAME_RULE}"),
    Case(
        "specs/run-name-not-a-string",
        lambda env: load_spec(_spec(env, 'name = 3\nanalysis = "drift"\n')),
        ValueError,
        r"config key 'name' must be a string; got 3",
    ),
    Case(
        "specs/analysis-not-a-string",
        lambda env: load_spec(_spec(env, 'name = "x"\nanalysis = ["drift"]\n')),
        ValueError,
        r"unknown analysis \['drift'\]; valid: \['circuits'",
    ),
    # spec values that passed the check and failed later
    Case(
        "specs/quirky-n-random-zero",
        _checked("quirky_elk", "[causal]\nn_random = 0\n"),
        ValueError,
        r"config key 'causal.n_random' must be >= 1; got 0",
        finding=True,
    ),
    Case(
        "specs/quirky-probe-C-zero",
        _checked("quirky_elk", "[probe]\nC = 0.0\n"),
        ValueError,
        r"config key 'probe.C' must lie in \(0, inf\); got 0.0",
        finding=True,
    ),
    Case(
        "specs/quirky-probe-C-inf",
        _checked("quirky_elk", "[probe]\nC = inf\n"),
        ValueError,
        r"config key 'probe.C' must be finite; got inf",
        finding=True,
    ),
    Case(
        "specs/quirky-seed-negative",
        _checked("quirky_elk", "[data]\nseed = -1\n"),
        ValueError,
        r"config key 'data.seed' must lie in \[0, 4294967295\]; got -1",
        finding=True,
    ),
    Case(
        "specs/drift-eval-rows-too-few",
        _checked("drift", "[drift]\neval_rows = 60\n"),
        ValueError,
        r"'drift\.eval_rows' = 60 leaves 3 rows \(1 true\) in the BH_disagree evaluation subset",
        finding=True,
    ),
    Case(
        "specs/drift-lr-nan",
        _checked("drift", "[train]\nlr = nan\n"),
        ValueError,
        r"config key 'train.lr' must be finite; got nan",
        finding=True,
    ),
    Case(
        "specs/drift-lr-negative",
        _checked("drift", "[train]\nlr = -0.001\n"),
        ValueError,
        r"config key 'train.lr' must lie in \(0, inf\); got -0.001",
        finding=True,
    ),
    Case(
        "specs/drift-batch-size-zero",
        _checked("drift", "[train]\nbatch_size = 0\n"),
        ValueError,
        r"config key 'train.batch_size' must lie in \[1, inf\); got 0",
        finding=True,
    ),
    Case(
        "specs/drift-unknown-method",
        _checked("drift", '[drift]\nmethods = ["svm"]\n'),
        ValueError,
        r"config key 'drift.methods' names unknown or no methods \['svm'\]; valid: \['lda', 'logistic'",
        finding=True,
    ),
    Case(
        "specs/drift-polarity-method",
        _checked("drift", '[drift]\nmethods = ["ttpd"]\n'),
        ValueError,
        r"config key 'drift.methods' names unknown or no methods \['ttpd'\]",
        finding=True,
    ),
    Case(
        "specs/drift-methods-empty",
        _checked("drift", "[drift]\nmethods = []\n"),
        ValueError,
        r"config key 'drift.methods' names unknown or no methods \[\]; valid:",
        finding=True,
    ),
    Case(
        "specs/drift-methods-not-strings",
        _checked("drift", "[drift]\nmethods = [1, 2]\n"),
        ValueError,
        r"config key 'drift.methods' must be a list of str; got \[1, 2\]",
        finding=True,
    ),
    Case(
        "specs/drift-frozen-matches-nothing",
        _checked("drift", '[train]\nfrozen = ["encoder."]\n'),
        ValueError,
        r"config key 'train.frozen'.*\['encoder\.'\] match no parameter of zoo:quirky-arith-base.*'blocks\.0\.",
        finding=True,
    ),
    Case(
        "specs/drift-frozen-not-strings",
        _checked("drift", "[train]\nfrozen = [0]\n"),
        ValueError,
        r"config key 'train.frozen' must be a list of str; got \[0\]",
        finding=True,
    ),
    Case(
        "specs/drift-anchor-site-unknown-kind",
        _checked("drift", '[anchor]\non = "all"\nsite = "blocks.1.mlp"\n'),
        ValueError,
        r"config key 'anchor.site'.*'blocks.1.mlp'.*blocks.L.hook_KIND",
        finding=True,
    ),
    Case(
        "specs/drift-anchor-site-layer-out-of-range",
        _checked("drift", '[anchor]\non = "all"\nsite = "blocks.9.hook_resid_pre"\n'),
        ValueError,
        r"config key 'anchor.site'.*layer 9.*zoo:quirky-arith-base has layers 0\.\.3",
        finding=True,
    ),
    Case(
        "specs/growth-anchor-site-off-the-drift-sites",
        _checked("growth", '[grow]\nn_layers = 6\n[anchor]\nsite = "blocks.0.hook_resid_pre"\n'),
        ValueError,
        r"config key 'anchor.site' must be one of \['blocks.1.hook_resid_pre'.*'blocks.3.hook_resid_post'\]",
        finding=True,
    ),
    Case(
        "specs/growth-random-blocks-not-deeper",
        _checked("growth", '[grow]\nop = "random_blocks"\nn_layers = 4\n'),
        ValueError,
        r"config key 'grow.n_layers' must be deeper than zoo:quirky-arith-base's 4.*got 4",
        finding=True,
    ),
    Case(
        "specs/growth-shrinks-width",
        _checked("growth", "[grow]\nd_model = 64\n"),
        ValueError,
        r"config key 'grow.d_model' must be 0 \(keep\) or at least zoo:quirky-arith-base's 128.*got 64",
        finding=True,
    ),
    Case(
        "specs/circuits-site-without-heads",
        _checked("circuits", '[circuits]\nsite = "blocks.0.hook_resid_pre"\n'),
        ValueError,
        r"config key 'circuits.site': no head writes into 'blocks.0.hook_resid_pre'",
        finding=True,
    ),
    Case(
        "specs/circuits-top-heads-zero",
        _checked("circuits", "[circuits]\ntop_heads = 0\n"),
        ValueError,
        r"config key 'circuits.top_heads' must be >= 1; got 0",
        finding=True,
    ),
    Case(
        "specs/circuits-ig-steps-zero",
        _checked("circuits", "[circuits]\nig_steps = 0\n"),
        ValueError,
        r"config key 'circuits.ig_steps' must be >= 1; got 0",
        finding=True,
    ),
    Case(
        "specs/truth-sets-nested-list",
        _checked("truth_generalization", '[data]\nsets = [["cities"]]\n'),
        ValueError,
        r"config key 'data.sets' must be a list of str; got \[\['cities'\]\]",
    ),
    Case(
        "specs/truth-answers-empty-string",
        _checked("truth_generalization", '[contrast]\nanswers = ["", " no"]\n'),
        ValueError,
        r"config key 'contrast.answers' must be two different strings, neither empty; got \['', ' no'\]",
    ),
    Case(
        "specs/truth-duplicate-methods",
        _checked("truth_generalization", '[probe]\nmethods = ["logistic", "logistic"]\n'),
        ValueError,
        r"config key 'probe.methods' names 'logistic' twice",
    ),
    Case(
        "specs/quoted-dotted-key",
        _quoted_dotted_key,
        ValueError,
        r"key 'model.spec' is written as one quoted key.*\[model\]",
    ),
    # the spec file and the command line
    Case(
        "specs/spec-is-a-directory",
        _cli_spec_is_a_directory,
        SystemExit,
        r"elk-lens run: analysis spec .* is a directory",
    ),
    Case(
        "specs/cli-device-not-present",
        _cli_run_on_a_missing_device,
        SystemExit,
        r"elk-lens run: device 'cuda:7' is not available: this machine has \d+ cuda device\(s\); use 'cpu'",
    ),
    Case("specs/spec-not-utf8", _spec_not_utf8, ValueError, r"weights\.toml is not a UTF-8 text file"),
    Case(
        "specs/cli-runs-is-a-file",
        _cli_run_with_runs_a_file,
        SystemExit,
        r"elk-lens run: cannot write the run directory under .*runs \(it is a file, not a directory\); choose a "
        r"writable place with --runs DIR",
    ),
    Case(
        "specs/hook-capture-layers-not-integers",
        _hook_args("capture_residuals", "--layers", "1,x", "--out", "{tmp}/a.safetensors"),
        ValueError,
        r"--layers must be 'all' or comma-separated block indices; got 'x'",
    ),
    Case(
        "specs/hook-ablate-bad-site",
        _hook_args("ablate_truth_heads", "--site", "blocks.3.resid"),
        ValueError,
        r"cannot parse site 'blocks.3.resid'",
    ),
    Case(
        "specs/hook-steer-rows-zero",
        _hook_args("steer_with_reporter", "--fit", "blocks.1.hook_resid_pre", "--rows", "0"),
        ValueError,
        r"--rows must lie in \[1, inf\); got 0",
    ),
    Case(
        "specs/cli-zoo-train-unknown-recipe",
        _cli("zoo", "train", "nope", "--out", "{tmp}/zoo"),
        SystemExit,
        r"unknown recipe 'nope'; valid: \['quirky-arith'\]",
    ),
    Case(
        "specs/cli-data-export-unknown-set",
        _cli("data", "export", "{tmp}/data", "--sets", "citys"),
        SystemExit,
        r"unknown datasets \['citys'\]; valid: \['cities', 'cities_conj'",
    ),
]
