"""Does this reporter fit this model: the one check, kept out of the artifact.

A `Reporter` is a frozen artifact that knows no model (it records the fingerprint of the one it was
fitted on, as a string); this module, which may see both, holds the single rule every caller applies:
loading a reporter for a model, scoring circuits with it.
"""

from transformer_lens.model_bridge import TransformerBridge

from elk_lens._fingerprint import fingerprint
from elk_lens.reporters.base import Reporter

__all__ = ["check_compatible"]


def check_compatible(reporter: Reporter, model: TransformerBridge, *, allow_other_model: bool = False) -> None:
    """Raise unless ``reporter`` was fitted on ``model``.

    The width must match (otherwise the readout cannot apply at all). The model fingerprint recorded in
    ``reporter.provenance["model"]`` must equal :func:`elk_lens.fingerprint` of ``model``: a reporter
    fitted on another model reads a residual basis it was not fitted in, and one that records no
    fingerprint cannot be checked, so both are refused unless ``allow_other_model`` (e.g. a transfer
    study on a fine-tuned checkpoint, on purpose). A dtype change changes the fingerprint too.

    Args:
        reporter: The reporter, e.g. from ``Reporter.load``.
        model: The model it is to read.
        allow_other_model: Skip the fingerprint check (the width is still checked).

    Raises:
        TypeError: ``reporter`` is not a `Reporter`.
        ValueError: The width differs, or (without ``allow_other_model``) the fingerprint differs or is
            not recorded.
    """
    if not isinstance(reporter, Reporter):
        raise TypeError(f"reporter must be a Reporter (elk_lens.reporters.Reporter); got {type(reporter).__name__}")
    what = f"the {reporter.method} reporter at {reporter.site}"
    if reporter.w.shape[0] != model.cfg.d_model:
        raise ValueError(
            f"{what} reads d_model={reporter.w.shape[0]} but the model has d_model={model.cfg.d_model}; "
            f"fit the reporter on this model"
        )
    if allow_other_model:
        return
    fitted_on, given = reporter.provenance.get("model"), fingerprint(model)
    if fitted_on is None:
        raise ValueError(
            f"{what} records no model fingerprint (provenance['model']), so it cannot be checked against this "
            f"model ({given}); fit it with provenance={{'model': elk_lens.fingerprint(model)}}, or pass "
            f"allow_other_model=True to use it anyway"
        )
    if fitted_on != given:
        raise ValueError(
            f"{what} was fitted on model {fitted_on}, this model is {given} (fingerprints differ; a dtype "
            f"change also changes it); refit it, or pass allow_other_model=True to use it anyway"
        )
