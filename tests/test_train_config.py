"""TrainConfig: one check when built (pydantic, NSF's own rules, schedule specs), plain data,
the run key, and the defaults that fit the device."""

from __future__ import annotations

import pytest
import torch

from nsf.train import TrainConfig


def test_equal_meanings_are_one_config():
    a = TrainConfig(p_schedule={"kind": "constant", "p": 0}, lr=1)
    b = TrainConfig(p_schedule={"kind": "constant", "p": 0.0}, lr=1.0)
    assert a == b and a.run_key() == b.run_key() and hash(a) == hash(b)
    assert TrainConfig.from_dict(a.to_dict()) == a
    multistep = TrainConfig(lr_schedule={"kind": "multistep", "milestones": [60, 120, 160]})
    assert multistep.lr_schedule["gamma"] == 0.2  # the companion's default
    assert a.replace(seed=3).seed == 3 and a.replace(seed=3).run_key() != a.run_key()


def test_run_key_leaves_out_the_cadence_only():
    base = TrainConfig()
    assert base.replace(log_every=7, checkpoint_every=9).run_key() == base.run_key()
    changes = [{"seed": 1}, {"compile": True}, {"amp": "none"}, {"device": "cpu"},
               {"eps": 1.0000001e-8}, {"p_schedule": {"kind": "constant", "p": 0.1}}]  # fmt: skip
    for change in changes:
        assert base.replace(**change).run_key() != base.run_key(), change


def test_defaults_fit_the_device():
    cpu = TrainConfig().on(torch.device("cpu"))
    assert (cpu.device, cpu.amp, cpu.channels_last) == ("cpu", "none", False)
    cuda = TrainConfig().on(torch.device("cuda", 0))
    assert (cuda.device, cuda.amp, cuda.channels_last) == ("cuda", "bf16", True)
    assert TrainConfig(amp="none").on(torch.device("cuda", 0)).amp == "none"


def test_from_file_reads_toml_and_json(tmp_path):
    (tmp_path / "c.toml").write_text('epochs = 3\nlr = 0.05\n[p_schedule]\nkind = "tidal"\n'
                                     "p_mid = 0.0\np_amp = 0.2\nperiod = 10\n")  # fmt: skip
    config = TrainConfig.from_file(tmp_path / "c.toml")
    assert config.epochs == 3 and config.p_schedule["period"] == 10.0
    (tmp_path / "c.json").write_text(
        '{"epochs": 3, "lr": 0.05, "p_schedule": '
        '{"kind": "tidal", "p_mid": 0.0, "p_amp": 0.2, "period": 10}}'
    )
    assert TrainConfig.from_file(tmp_path / "c.json") == config


@pytest.mark.parametrize(
    ("name", "text", "named"),
    [
        ("c.yaml", "epochs: 3\n", r"\.toml or \.json, not '\.yaml'"),
        ("config", '{"epochs": 3}', r"\.toml or \.json, not ''"),
        ("c.toml", "epochs = 3\nlearning_rate = 0.1\n", "learning_rate"),
        ("c.json", '{"epochs": 3, "learning_rate": 0.1}', "learning_rate"),
        ("c.toml", "epochs = 0\n", "epochs"),
        ("c.toml", "epochs = [3\n", "not valid TOML"),
        ("c.json", '{"epochs": 3,}', "not valid JSON"),
        ("c.json", "[3]", "table of TrainConfig fields"),
    ],
)
def test_from_file_refuses_other_suffixes_bad_files_and_unknown_fields(tmp_path, name, text, named):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=named) as err:
        TrainConfig.from_file(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"dataset": "mnist"}, "'mnist'"),
        ({"model": "vgg11"}, "'vgg11'"),
        ({"stem": "mobile"}, "'mobile'"),
        ({"lr": -0.1}, "lr must be"),  # NSF's own rule, not repeated here
        ({"lr": float("nan")}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"betas": (0.9, 1.0)}, "betas\\[1\\]"),
        ({"momentum": "nesterov"}, "'nesterov'"),
        ({"eps_mode": "around"}, "'around'"),
        ({"update_norm": "l2"}, "'l2'"),
        ({"amp": "fp16"}, "amp"),
        ({"device": "tpu"}, "device"),
        ({"p_schedule": {"kind": "sine", "p": 0.1}}, "'sine'"),
        ({"p_schedule": {"kind": "constant"}}, "missing \\['p'\\]"),
        ({"p_schedule": {"kind": "constant", "p": 0.1, "q": 1}}, "\\['q'\\]"),
        ({"p_schedule": {"kind": "constant", "p": "high"}}, "'high'"),
        ({"p_schedule": {"kind": "alternating", "high": 1, "low": 0, "every": 0}}, "every"),
        ({"lr_schedule": {"kind": "step"}}, "'step'"),
        ({"lr_unit": "batch"}, "lr_unit"),
        ({"lr_schedule": {"kind": "multistep", "milestones": [120, 60]}}, "\\[120, 60\\]"),
        ({"lr_schedule": {"kind": "multistep", "milestones": [60], "gama": 0.1}}, "'gama'"),
        ({"model_options": {"depth": 3}}, "'depth'"),
        ({"flip": "yes"}, "flip"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_a_bad_field_is_refused_by_name(change, named):
    with pytest.raises(ValueError, match=named):
        TrainConfig.from_dict(change)
