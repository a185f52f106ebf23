"""Chapter 06's arms (nsf.pulsetidal.setup) and the engine pieces they rest on: the baseline arm
is torch's SGD, the controls are the schedules they claim to be, the measured step-size ratio is
the mean of the whole-network rows, and the reduced ResNet-18 is ResNet-18's shape at width 64."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from nsf import schedules
from nsf.pulsetidal import PulseTidalSetup, step_ratio
from nsf.train import TrainConfig, train
from nsf.train.datasets import load_dataset
from nsf.train.loader import DeviceLoader
from nsf.train.models import _narrow, build_model, resnet18

TINY = {"size": 16, "channels": 3, "num_classes": 4, "n": 256, "n_test": 64,
        "band": [1.0, 4.0], "signal": 0.5}  # fmt: skip


def _setup(**changes) -> PulseTidalSetup:
    fields = {"data_options": TINY, "width": 4, "epochs": 2, "batch_size": 64, "pulse_steps": 3,
              "every": 2, "pulse_lengths": (0, 5), "diagnostics_every": 2, **changes}  # fmt: skip
    return PulseTidalSetup(**fields)


def test_the_baseline_arm_is_a_plain_torch_sgd_loop_over_the_same_batches(tmp_path):
    setup = _setup(dataset="digits", data_options={}, epochs=2, batch_size=674)
    config = TrainConfig.from_dict({**setup.base_fields(), **setup.arms()["baseline"]})
    assert config.p_schedule == {"kind": "constant", "p": 0.0}
    result = train(config, tmp_path, progress=False)

    data = load_dataset("digits", "train")
    loader = DeviceLoader(data, config.batch_size, device="cpu", train=True, seed=config.seed,
                          channels_last=False, drop_last=False)  # fmt: skip
    torch.manual_seed(config.seed)
    net = build_model("resnet18", 10, 1, stem=config.stem, **config.model_options)
    sgd = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=0.9,
                          weight_decay=config.weight_decay)  # fmt: skip
    milestones = config.lr_schedule.get("milestones", [])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(sgd, milestones, gamma=setup.gamma)
    steps = 0
    for epoch in range(config.epochs):
        for x, y in loader.epoch(epoch):
            sgd.zero_grad()
            F.cross_entropy(net(x), y).backward()
            sgd.step()
            steps += 1
        scheduler.step()
    assert steps == 4 and milestones == [1]  # two steps at lr, two at lr * gamma
    final = torch.load(result.run_dir / "model.pt", weights_only=True)
    # Four steps, so that float rounding (the two loops order their arithmetic differently) has
    # no room to be amplified by the tiny network's chaotic dynamics over many steps.
    for name, value in net.state_dict().items():
        # eps = 1e-8 outside the power: every engine step is SGD's divided by 1 + 1e-8
        torch.testing.assert_close(final[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_the_controls_are_the_schedules_they_name():
    setup = _setup()
    arms = setup.arms()
    assert set(arms) == {"baseline", "pulse_tidal", "constant_mean", "rms_matched", "low_first",
                         "pulse_0", "pulse_5"}  # fmt: skip
    main = schedules.from_spec(arms["pulse_tidal"]["p_schedule"])
    total = setup.iterations()
    assert total == 4 * 2  # ceil(256 / 64) batches x 2 epochs
    mean = sum(main(t) for t in range(total)) / total
    assert arms["constant_mean"]["p_schedule"] == {"kind": "constant", "p": pytest.approx(mean)}
    swapped = schedules.from_spec(arms["low_first"]["p_schedule"])
    assert [swapped(t) for t in range(3, 7)] == [-0.15, -0.15, 0.25, 0.25]
    assert [main(t) for t in range(3, 7)] == [0.25, 0.25, -0.15, -0.15]
    assert arms["rms_matched"]["update_norm"] == "rms_matched"
    no_pulse = schedules.from_spec(arms["pulse_0"]["p_schedule"])
    assert no_pulse(0) == 0.25
    assert len(setup.main_sweep()) == 2 * 3 and len(setup.control_sweep()) == 5
    scaled = setup.scaled_sweep(12.5).points[0].config
    assert scaled.lr == pytest.approx(setup.lr * 12.5) and scaled.p_schedule["p"] == 0.0


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"pulse_lengths": (0, 3)}, "pulse_tidal arm's own pulse_steps"),
        ({"controls": ("rms_matched", "rms_matched")}, "repeats"),
        ({"thresholds": (0.5, 1.5)}, "less than or equal to 1"),
        ({"width": 0}, "greater than"),
    ],
)
def test_a_bad_setting_is_refused_by_name(changes, needle):
    with pytest.raises(ValueError, match=needle):
        _setup(**changes)


def test_step_ratio_is_the_mean_of_the_whole_network_rows():
    rows = pd.DataFrame(
        {"layer": ["a", "*", "b", "*", "*"], "ratio_to_p0": [100.0, 2.0, 0.01, 4.0, 9.0]}
    )
    assert step_ratio(rows) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="no whole-network"):
        step_ratio(rows[rows["layer"] != "*"])
    with pytest.raises(ValueError, match="must be > 0"):
        _setup().scaled_sweep(float("nan"))


def test_the_narrowed_resnet18_has_resnet18s_structure_at_width_64():
    from torchvision.models import resnet18 as tv_resnet18

    reference = tv_resnet18(num_classes=200)
    rebuilt = tv_resnet18(num_classes=200)
    _narrow(rebuilt, 64, 3)
    shapes = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    small = resnet18(200, "cifar", 3, width=16)
    assert small.conv1.out_channels == 16 and small.fc.in_features == 128
    assert small(torch.zeros(2, 3, 64, 64)).shape == (2, 200)
    # the convolutions scale with width^2; a quarter of the width is about 1/16 of the weights
    full = sum(p.numel() for p in resnet18(200, "cifar").parameters())
    assert 0.05 < sum(p.numel() for p in small.parameters()) / full < 0.08
    with pytest.raises(ValueError, match="known: width"):
        build_model("resnet18", 10, stem="cifar", depth=4)
