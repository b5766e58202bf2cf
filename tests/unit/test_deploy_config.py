"""`tfkit deploy config`: the written models.config parses and says what was asked; bad input
is refused early with one line."""

import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from toolkit.cli import cli
from toolkit.errors import InputError
from toolkit.fleet.plan import VersionPolicy


def _run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def _parse(path):
    return text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())


def test_config_for_two_models_with_policy_and_labels(models_dir, tmp_path):
    out = tmp_path / "models.config"
    result = _run(
        "deploy",
        "config",
        models_dir / "plus",
        models_dir / "two",
        "--policy",
        "plus:all",
        "--label",
        "plus:stable=1",
        "--label",
        "plus:canary=2",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    configs = {c.name: c for c in _parse(out).model_config_list.config}
    assert set(configs) == {"plus", "two"}
    plus, two = configs["plus"], configs["two"]
    assert plus.base_path == str((models_dir / "plus").resolve())
    assert plus.model_platform == "tensorflow"
    assert plus.model_version_policy.WhichOneof("policy_choice") == "all"
    assert dict(plus.version_labels) == {"stable": 1, "canary": 2}
    assert two.model_version_policy.latest.num_versions == 1
    assert not two.version_labels
    # The printed command serves exactly this file, with labels allowed at start-up.
    assert f"--model_config_file={out.resolve()}" in result.output
    assert "--allow_version_labels_for_unavailable_models=true" in result.output


def test_tf_serving_zero_padded_version_folders(tmp_path):
    # The layout of TF Serving's own test models: 00000123/ and 00000124/ are versions 123 and 124.
    model = tmp_path / "padded"
    for folder in ("00000123", "00000124"):
        (model / folder).mkdir(parents=True)
        (model / folder / "saved_model.pb").write_bytes(b"")
    out = tmp_path / "models.config"
    result = _run("deploy", "config", model, "--policy", "specific=123,124", "--label", "stable=123", "-o", out)
    assert result.exit_code == 0, result.output
    (config,) = _parse(out).model_config_list.config
    assert list(config.model_version_policy.specific.versions) == [123, 124]
    assert dict(config.version_labels) == {"stable": 123}


@pytest.mark.parametrize(
    "policy,field,read,expected",
    [
        ("latest=2", "latest", lambda p: p.latest.num_versions, 2),
        ("specific=2,1", "specific", lambda p: list(p.specific.versions), [1, 2]),
    ],
)
def test_policies_land_in_the_proto(models_dir, tmp_path, policy, field, read, expected):
    out = tmp_path / "m.config"
    result = _run("deploy", "config", models_dir / "plus", "--policy", policy, "-o", out)
    assert result.exit_code == 0, result.output
    chosen = _parse(out).model_config_list.config[0].model_version_policy
    assert chosen.WhichOneof("policy_choice") == field
    assert read(chosen) == expected


def test_models_root_rewrites_base_paths_for_containers(models_dir, tmp_path):
    out = tmp_path / "m.config"
    result = _run("deploy", "config", models_dir / "plus", "--models-root", "/models/", "-o", out)
    assert result.exit_code == 0, result.output
    assert _parse(out).model_config_list.config[0].base_path == "/models/plus"


@pytest.mark.parametrize(
    "args,message",
    [
        (["{base}/missing"], "missing is not a directory"),
        (["{empty}"], "has no version folders"),
        (["{base}/plus", "--policy", "specific=3"], "version 3 is not on disk"),
        (["{base}/plus", "--policy", "newest"], "bad version policy 'newest'"),
        (["{base}/plus", "--label", "stable=9"], "label stable points at version 9, which is not on disk"),
        (["{base}/plus", "--label", "stable=1"], "version policy latest loads only 2"),
        (["{base}/plus", "--policy", "all", "--label", "gold=1"], "LABEL one of stable, canary"),
        (["{base}/plus", "--policy", "all", "--label", "stable=1", "--label", "stable=2"], "label stable given twice"),
        (["{base}/plus", "{base}/two", "--label", "stable=1"], "needs a model prefix NAME:"),
        (["{base}/plus", "{base}/two", "--policy", "three:all"], "names model 'three'"),
        (["{base}/plus", "{base}/plus"], "model 'plus' given twice"),
        (["{base}/plus", "--policy", "all", "--policy", "latest"], "--policy given twice"),
        (["{hollow}"], "version folder {hollow}/3 holds no saved_model.pb"),
    ],
)
def test_bad_input_is_one_line_exit_2(models_dir, tmp_path, args, message):
    empty = tmp_path / "empty"
    (empty / "not_a_version").mkdir(parents=True)
    hollow = tmp_path / "hollow"
    (hollow / "3" / "variables").mkdir(parents=True)
    args = [a.format(base=models_dir, empty=empty, hollow=hollow) for a in args]
    message = message.format(hollow=hollow)
    out = tmp_path / "m.config"
    result = _run("deploy", "config", *args, "-o", out)
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert message in result.output
    assert not out.exists()


def test_version_policy_served_versions():
    on_disk = (1, 2, 5)
    assert VersionPolicy.parse("latest").served(on_disk) == (5,)
    assert VersionPolicy.parse("latest=2").served(on_disk) == (2, 5)
    assert VersionPolicy.parse("all").served(on_disk) == on_disk
    assert VersionPolicy.parse("specific=5,1,7").served(on_disk) == (1, 5)
    for bad in ("latest=0", "all=2", "specific=", "specific=a", "specific=-1"):
        with pytest.raises(InputError):
            VersionPolicy.parse(bad)
