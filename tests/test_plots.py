"""The pictures (training curves, codebook usage, Recall@K against K) and the CLI's ``--plot`` and ``--quiet``."""

import json
import logging

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from hf_genrec.cli.main import main  # noqa: E402
from hf_genrec.evaluation import plots as plotting  # noqa: E402
from hf_genrec.evaluation.metrics import make_compute_metrics, recall_curve  # noqa: E402
from hf_genrec.utils.progress import are_progress_bars_disabled, enable_progress_bars  # noqa: E402

from .conftest import make_semantic_ids  # noqa: E402
from .test_cli import TINY_FLAGS, data_root  # noqa: E402, F401  (the module's tiny dataset fixture)

LOG = [
    {"loss": 3.0, "step": 5, "epoch": 0.5},
    {"loss": 2.0, "step": 10, "epoch": 1.0},
    {"eval_loss": 2.5, "eval_recall@5": 0.1, "eval_ndcg@5": 0.05, "eval_mrr@5": 0.04, "step": 10, "epoch": 1.0},
    {"loss": 1.5, "step": 15, "epoch": 1.5},
    {"eval_loss": 2.2, "eval_recall@5": 0.3, "eval_ndcg@5": 0.2, "eval_mrr@5": 0.1, "step": 20, "epoch": 2.0},
    {"test_loss": 2.1, "test_recall@5": 0.25, "step": 20, "epoch": 2.0},  # a test evaluation is not a curve point
]


def _lines(ax) -> dict[str, tuple[list, list]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_training_curves_plot_the_logged_points():
    fig = plotting.training_curves_figure(LOG)
    loss_ax, rank_ax = fig.axes
    assert loss_ax.get_title() == "Training and validation loss"
    lines = _lines(loss_ax)
    assert lines["training loss"] == ([5, 10, 15], [3.0, 2.0, 1.5])
    assert lines["validation loss"] == ([10, 20], [2.5, 2.2])
    assert rank_ax.get_title() == "Validation ranking metrics"
    ranks = _lines(rank_ax)
    assert set(ranks) == {"Recall@5", "NDCG@5"}  # MRR and the test entry are not plotted
    assert ranks["Recall@5"] == ([10, 20], [0.1, 0.3])
    by_epoch = plotting.training_curves_figure(LOG, x="epoch")
    assert _lines(by_epoch.axes[0])["training loss"][0] == [0.5, 1.0, 1.5]
    with pytest.raises(ValueError, match="no training or validation loss"):
        plotting.training_curves_figure([{"step": 1}])


def test_recall_at_k_plot_and_curve():
    curve = {"k": [1, 2, 3], "model": [0.1, 0.2, 0.3], "most popular": [0.0, 0.1, 0.1]}
    ax = plotting.recall_at_k_figure(curve).axes[0]
    assert ax.get_title() == "Recall@K against K" and ax.get_xlabel() == "K (items recommended)"
    assert _lines(ax) == {"model": ([1, 2, 3], [0.1, 0.2, 0.3]), "most popular": ([1, 2, 3], [0.0, 0.1, 0.1])}
    with pytest.raises(ValueError, match="2 values for 3 K values"):
        plotting.recall_at_k_figure({"k": [1, 2, 3], "model": [0.1, 0.2]})
    # the curve agrees with the metric at each K
    predictions = np.array([[4, 1, 2, 3], [0, 2, 1, 3], [3, 2, 1, 0]])
    assert recall_curve(predictions, [2, 0, 7]) == [1 / 3, 1 / 3, 2 / 3, 2 / 3]
    record = {}
    make_compute_metrics([1, 4], record=record)(type("P", (), {"predictions": predictions, "label_ids": [2, 0, 7]}))
    assert record["ranks"].tolist() == [2, 0, 4]


def test_codebook_usage_figure_counts_items_per_code():
    ids = make_semantic_ids(n_items=40, n_levels=2, codebook_size=4)
    fig = plotting.codebook_usage_figure(ids)
    rate = ids.diagnostics["collision_rate_before"]
    assert fig.texts[0].get_text() == f"custom IDs: 40 items, {100 * rate:.1f}% share a tuple before disambiguation"
    assert len(fig.axes) == ids.codes.shape[1]  # one panel per level, the collision level included
    for level, ax in enumerate(fig.axes):
        heights = sorted((p.get_height() for p in ax.patches), reverse=True)
        column = ids.codes[:, level]
        assert heights == sorted(np.bincount(column[column >= 0], minlength=len(heights)).tolist(), reverse=True)
        assert ax.get_title().startswith(f"level {level}")


@pytest.fixture
def restore_verbosity():
    yield
    enable_progress_bars()
    logging.getLogger().setLevel(logging.INFO)


def test_cli_train_plots_next_to_results_and_quiet_silences(data_root, tmp_path, capfd, restore_verbosity):  # noqa: F811
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out),
         "--item_features", str(data_root / "features.npy"), *TINY_FLAGS, "--logging_steps", "1",
         "--plot", "--quiet"]
    )  # fmt: skip
    assert code == 0
    assert are_progress_bars_disabled()
    captured = capfd.readouterr()
    assert "| hf_genrec (rqkmeans) |" in captured.out
    # no bars (tqdm draws "it/s" or "%|"), no INFO lines, no printed log dicts
    assert "it/s" not in captured.err and "%|" not in captured.err and "INFO" not in captured.err
    assert "{'loss'" not in captured.out
    results = json.loads((out / "results.json").read_text())
    curve = results["recall_curve"]
    assert curve["k"] == list(range(1, 11))
    model_curve = curve["hf_genrec (rqkmeans)"]
    assert model_curve[4] == pytest.approx(results["test"]["recall@5"])
    assert model_curve[9] == pytest.approx(results["test"]["recall@10"])
    assert curve["most popular"][9] == pytest.approx(results["baselines"]["most_popular"]["recall@10"])
    assert all(a <= b for a, b in zip(model_curve, model_curve[1:]))
    assert any("loss" in entry for entry in results["log_history"])
    for name in ("training_curves.png", "codebook_usage.png", "recall_at_k.png"):
        image = Image.open(out / name)
        image.verify()  # a whole, valid PNG
        assert image.format == "PNG" and image.size[0] > 300
        assert f"Plot: {out / name}" in captured.out
