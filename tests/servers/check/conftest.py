"""Session fixtures for the parity tests: one `tfkit run`, small foreign
SavedModels, and one model server (real process, ephemeral 127.0.0.1 ports)
serving them."""

import json
import os

import pytest
from click.testing import CliRunner

from tf_serving_testdata import HALF_PLUS_TWO_TF2

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HALF_PLUS_TWO = HALF_PLUS_TWO_TF2


def invoke(*args):
    """Run `tfkit ARGS` in-process; returns click's Result."""
    from toolkit.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="session")
def tfkit():
    """`tfkit(*args)` runs the CLI in-process and returns click's Result."""
    return invoke


@pytest.fixture(scope="session")
def half_plus_two():
    """TF Serving's own TF2 test model (read-only)."""
    return HALF_PLUS_TWO


@pytest.fixture(scope="session")
def tfkit_run(tmp_path_factory):
    """`tfkit run --out R --junit R/junit.xml` once per session: (result, R)."""
    out = tmp_path_factory.mktemp("tfkit-run")
    result = invoke("run", "--out", out, "--junit", out / "junit.xml")
    return result, out


@pytest.fixture(scope="session")
def run_report(tfkit_run):
    result, out = tfkit_run
    assert result.exit_code == 0, result.output
    return json.loads((out / "report" / "report.json").read_text())


@pytest.fixture(scope="session")
def foreign_models(tmp_path_factory):
    """BASE/scale/{1,2} (y = 2x and y = 3x, x float32 [?,3]) and BASE/two_inputs/1
    (a float32 [?,4], b int32 [?,2,2] -> total [?], scaled [?,4]): other shapes than tfkit's."""
    from toolkit.tfenv import import_tf

    t = import_tf()
    base = tmp_path_factory.mktemp("foreign")

    class Scale(t.Module):
        def __init__(self, k):
            super().__init__()
            self.k = t.Variable(k)

        @t.function(input_signature=[t.TensorSpec([None, 3], t.float32, name="x")])
        def serve(self, x):
            return {"y": x * self.k}

    class TwoInputs(t.Module):
        @t.function(
            input_signature=[
                t.TensorSpec([None, 4], t.float32, name="a"),
                t.TensorSpec([None, 2, 2], t.int32, name="b"),
            ]
        )
        def serve(self, a, b):
            return {"total": t.reduce_sum(a, 1) + t.cast(t.reduce_sum(b, [1, 2]), t.float32), "scaled": a * 0.5}

    for version, k in ((1, 2.0), (2, 3.0)):
        module = Scale(k)
        t.saved_model.save(module, str(base / "scale" / str(version)), signatures={"serving_default": module.serve})
    module = TwoInputs()
    t.saved_model.save(module, str(base / "two_inputs" / "1"), signatures={"serving_default": module.serve})
    return base


@pytest.fixture(scope="session")
def server(foreign_models, exported_model, tmp_path_factory):
    """One model server for the session serving scale (latest: version 2), two_inputs
    and tfkit's exported logreg."""
    from toolkit.serve import LocalServer

    config = tmp_path_factory.mktemp("server") / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{n}" base_path: "{base / n}" model_platform: "tensorflow" }}\n'
            for n, base in (("scale", foreign_models), ("two_inputs", foreign_models), ("logreg", exported_model))
        )
        + "}\n"
    )
    with LocalServer([f"--model_config_file={config}"], rest=True, timeout=120) as s:
        yield s
