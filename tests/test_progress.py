"""One switch for every progress bar: ID fitting draws one by default, none after ``disable_progress_bars()``."""

import numpy as np
import pytest

from hf_genrec import RQKMeans
from hf_genrec.training.trainer import GenRecTrainer
from hf_genrec.utils.progress import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from .conftest import tiny_training_args


@pytest.fixture
def bars_back_on():
    yield
    enable_progress_bars()


def test_id_fitting_bar_follows_the_switch(capsys, bars_back_on):
    features = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    ids = [str(i) for i in range(64)]
    RQKMeans(n_levels=2, codebook_size=4, pca_dim=None).fit(features, ids)
    assert "RQ-KMeans: 100%" in capsys.readouterr().err
    disable_progress_bars()
    assert are_progress_bars_disabled()
    RQKMeans(n_levels=2, codebook_size=4, pca_dim=None).fit(features, ids)
    assert "RQ-KMeans" not in capsys.readouterr().err


def test_quiet_trainer_has_neither_bars_nor_printed_logs(tiny_model, item_tokenizer, tmp_path, bars_back_on):
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    disable_progress_bars()
    args = tiny_training_args(tmp_path, disable_tqdm=False)
    trainer = GenRecTrainer(model=tiny_model, args=args, item_tokenizer=item_tokenizer)
    kinds = {type(cb) for cb in trainer.callback_handler.callbacks}
    assert args.disable_tqdm and ProgressCallback not in kinds and PrinterCallback not in kinds
