"""Every notebook in notebooks/ runs top to bottom on a small setting (papermill-style: a cell of CI parameters is
injected after the cell tagged ``parameters``), executed by a real Jupyter kernel through nbclient."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TINY_T5 = dict(num_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16)

#: per notebook: the parameters CI injects, and the dataset it reads from $HF_GENREC_DATA_DIR (None: no data)
CI = {
    "quickstart_ml-100k.ipynb": (
        dict(feature_method="attributes", codebook_size=16, model_size=TINY_T5, max_train_targets_per_user=3,
             num_train_epochs=1, max_steps=6, max_eval_users=40, push_to_repo="someone/genrec-ml-100k"),
        "ml-100k",
    ),
    "semantic_ids.ipynb": (
        dict(feature_method="attributes", codebook_size=16, rqvae_epochs=2, title_vocab_size=500),
        "ml-100k",
    ),
    "tiger_amazon-beauty.ipynb": (dict(results_dir=str(ROOT / "benchmarks" / "results")), None),
}  # fmt: skip


def _parameters_cell(nb) -> int:
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged `parameters`"
    return tagged[0]


def _defined(source: str) -> set[str]:
    return {t.id for node in ast.parse(source).body if isinstance(node, ast.Assign) for t in node.targets}


def test_every_notebook_has_a_ci_setting_and_no_stored_outputs():
    assert {path.name for path in NOTEBOOKS} == set(CI)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        cell = nb.cells[_parameters_cell(nb)]
        assert set(CI[path.name][0]) <= _defined(cell.source), f"{path.name}: CI sets parameters it does not have"
        outputs = sum(len(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code")
        assert outputs == 0, f"{path.name} is stored with outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    parameters, dataset = CI[path.name]
    data_dir = os.environ.get("HF_GENREC_DATA_DIR")
    if dataset and not (data_dir and (Path(data_dir) / dataset).is_dir()):
        pytest.skip(f"{path.name} reads {dataset}; set HF_GENREC_DATA_DIR to a folder holding it")
    nb = nbformat.read(path, as_version=4)
    position = _parameters_cell(nb)
    if "output_dir" in _defined(nb.cells[position].source):  # write under the test's folder, not the repo
        parameters = {**parameters, "output_dir": str(tmp_path / "outputs")}
    source = "# Injected by tests/test_notebooks.py\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(position + 1, injected)
    # the kernel imports this checkout's hf_genrec, runs on one thread, draws without a display
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_GENREC_DISABLE_PROGRESS_BARS", "1")
    hub = None
    if "push_to_repo" in parameters:  # the sharing cell pushes to (and loads from) a loopback Hub
        from .hub_server import LoopbackHub

        hub = LoopbackHub().start()
        for name, value in hub.env(str(tmp_path / "hf-home")).items():
            monkeypatch.setenv(name, value)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed\n{err}")
    finally:
        if hub is not None:
            hub.stop()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    if hub is not None:
        files = hub.files(parameters["push_to_repo"])
        assert "model.safetensors" in files and "genrec_config.json" in files
