"""Every notebook under notebooks/ runs top to bottom in a real kernel (no cell may raise)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert outputs, "the notebook printed nothing"
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    if path.stem == "truth":
        assert sum("image/svg+xml" in o.get("data", {}) for o in outputs) == 3  # two matrices and a layer chart
    if path.stem == "circuits":
        assert "<svg" in html and "CircuitsVis.render(" in html  # the figures were drawn
