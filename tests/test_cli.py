import json

import pytest
import yaml

from babyllama.cli import COMMANDS, main


def run_cli(*argv):
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    return stop.value.code


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    assert run_cli(command, "--help") == 0
    out = capsys.readouterr().out
    assert "usage: babyllama" in out and "--" in out


def test_pretrain_help_lists_training_arguments_names(capsys):
    run_cli("pretrain", "--help")
    out = capsys.readouterr().out
    for name in ("--learning_rate", "--warmup_steps", "--lr_scheduler_type", "--per_device_train_batch_size",
                 "--gradient_accumulation_steps", "--max_steps", "--save_total_limit", "--resume_from_checkpoint",
                 "--max_time", "--dim", "--n_kv_heads"):
        assert name in out


def test_unknown_flag_is_an_error(capsys):
    assert run_cli("pretrain", "--learning_rat", "1e-3") == 2
    assert "unrecognized arguments: --learning_rat" in capsys.readouterr().err


def test_bad_value_is_an_error(capsys):
    assert run_cli("pretrain", "--max_steps", "many") == 2
    assert "expected int, got 'many'" in capsys.readouterr().err
    assert run_cli("pretrain", "--lr_scheduler_type", "cosin") == 2


def test_negative_rate_is_a_clear_error(prepared_512, tmp_path, capsys):
    assert run_cli("pretrain", "--data", prepared_512, "--output_dir", tmp_path, "--learning_rate", "-1") == 1
    err = capsys.readouterr().err
    assert "--learning_rate must be a positive" in err and "got -1.0" in err


def test_unknown_preset_is_a_clear_error(prepared_512, tmp_path, capsys):
    assert run_cli("pretrain", "--data", prepared_512, "--output_dir", tmp_path, "--preset", "15M") == 2
    assert "invalid choice: '15M'" in capsys.readouterr().err


def test_yaml_config_with_flag_override(prepared_512, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": str(prepared_512), "output_dir": str(tmp_path), "run_name": "from-yaml",
                                      "max_steps": 3, "learning_rate": 1e-3, "dim": 32, "n_layers": 1, "n_heads": 2,
                                      "n_kv_heads": 2, "max_seq_len": 64, "seq_len": 32,
                                      "per_device_train_batch_size": 4, "num_samples": 0, "disable_tqdm": True}))
    assert run_cli("pretrain", "--config", config, "--learning_rate", "2e-3") == 0
    manifest = json.loads((tmp_path / "from-yaml" / "manifest.json").read_text())
    assert manifest["config"]["train"]["learning_rate"] == 2e-3  # the flag wins
    assert manifest["config"]["train"]["max_steps"] == 3 and manifest["config"]["model"]["dim"] == 32


def test_unknown_yaml_key_message(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rat: 0.001\n")
    run_cli("pretrain", "--config", config)
    err = capsys.readouterr().err
    assert "unknown option 'learning_rat' in config file" in err and 'did you mean "learning_rate"' in err
