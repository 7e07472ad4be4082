"""The shared training loop: batches drawn by worker processes, and runs cut to a time budget."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from nuclei_core.training import train_hovernet, train_segmenter
from nuclei_core.training.batch_prefetch import PrefetchedBatches, step_generator
from nuclei_core.training.trainer import FIT_PROBE_STEPS, TrainSettings, fitted_steps, train


def draw_batch(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A regression batch whose values come only from ``rng``."""
    inputs = torch.from_numpy(rng.normal(size=(4, 3)).astype(np.float32))
    return inputs, inputs.sum(dim=1, keepdim=True) + torch.from_numpy(rng.normal(size=(4, 1)).astype(np.float32))


def run(tmp_path, workers: int, steps: int = 12, **extra) -> tuple[dict, nn.Module]:
    torch.manual_seed(0)
    network = nn.Linear(3, 1)
    settings = TrainSettings(steps=steps, learning_rate=1e-2, eval_every=4, seed=5,
                             checkpoint=tmp_path / f"run{workers}.ckpt", loader_workers=workers, **extra)
    state = train(network, draw_batch, nn.functional.mse_loss, lambda net: (-float(net.bias.abs()), {}), settings,
                  log=lambda line: None)
    return state, network


def test_prefetched_batches_are_each_steps_own_draw_in_order() -> None:
    with PrefetchedBatches(draw_batch, seed=3, workers=2, first_step=7) as batches:
        drawn = [batches.next() for _ in range(5)]
    for step, (inputs, targets) in zip(range(7, 12), drawn):
        expected_inputs, expected_targets = draw_batch(step_generator(3, step))
        assert torch.equal(inputs, expected_inputs) and torch.equal(targets, expected_targets)
    assert not torch.equal(drawn[0][0], drawn[1][0])


def test_training_with_workers_does_not_depend_on_their_number(tmp_path) -> None:
    _, one = run(tmp_path, workers=1)
    _, three = run(tmp_path, workers=3)
    _, inline = run(tmp_path, workers=0)
    assert torch.equal(one.weight, three.weight) and torch.equal(one.bias, three.bias)
    assert not torch.equal(one.weight, inline.weight)  # the in-process generator draws other batches


def test_fitted_steps_is_a_multiple_of_the_validation_interval_within_the_budget() -> None:
    settings = TrainSettings(steps=10_000, learning_rate=1e-3, eval_every=50, seed=0, checkpoint=None,
                             fit_minutes=1.0)
    assert fitted_steps(settings, 23, [0.1] * 20) == 600  # 23 + (60 s - 2 s probed) / 0.1 s = 603
    settings.steps = 300
    assert fitted_steps(settings, 23, [0.1] * 20) == 300  # never longer than asked
    assert fitted_steps(settings, 23, [10.0] * 20) == 50  # over budget already: stop at the next validation


def test_a_run_cut_to_its_budget_records_and_resumes_with_the_cut(tmp_path) -> None:
    state, _ = run(tmp_path, workers=0, steps=100, fit_minutes=1e-6)
    probed = FIT_PROBE_STEPS + 3
    assert state["fitted_steps"] == state["step"] == -(-probed // 4) * 4
    assert [record["step"] for record in state["history"]] == list(range(4, state["step"] + 1, 4))
    resumed, _ = run(tmp_path, workers=0, steps=100, fit_minutes=1e-6)  # same checkpoint: nothing left to run
    assert resumed["step"] == state["step"]


@pytest.mark.parametrize("frozen", [False, True])
def test_frozen_batch_norm_keeps_its_statistics_and_weights_while_the_rest_learns(tmp_path, frozen) -> None:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    before = {name: value.clone() for name, value in network.state_dict().items()}
    settings = TrainSettings(steps=8, learning_rate=1e-2, eval_every=4, seed=5, checkpoint=tmp_path / "bn.ckpt",
                             freeze_batch_norm=frozen)
    train(network, draw_batch, nn.functional.mse_loss, lambda net: (0.0, {}), settings, log=lambda line: None)
    after = network.state_dict()
    batch_norm_unchanged = all(torch.equal(before[key], after[key]) for key in before if key.startswith("1."))
    assert batch_norm_unchanged == frozen
    assert not torch.equal(before["0.weight"], after["0.weight"])  # the other layers learn either way


def test_a_training_script_given_bad_input_ends_in_one_line_and_writes_nothing(tmp_path) -> None:
    (tmp_path / "images").mkdir(), (tmp_path / "labels").mkdir()
    output = tmp_path / "never.pt"
    done = subprocess.run([sys.executable, "-m", "nuclei_core.training.train_segmenter", "--images-dir",
                           str(tmp_path / "images"), "--labels-dir", str(tmp_path / "labels"), "--output", str(output)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"train_segmenter.py: error: no image in {tmp_path / 'images'} has a label map of the same name in "
        f"{tmp_path / 'labels'}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "labels"]  # no weights, log or checkpoint


@pytest.mark.parametrize("script, flag", [(train_segmenter, "--loader-workers"), (train_segmenter, "--fit-minutes"),
                                          (train_hovernet, "--gradient-loss-weight")])
def test_negative_loader_workers_minutes_or_loss_weight_are_a_parser_error(script, flag, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        script.main(["--output", "unused.pt", flag, "-1"])
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"argument {flag}: must be at least 0, not -1" in line
