"""`tfkit check`: every runtime against the reference, with the options `tfkit run` shares."""

import contextlib

import click

from toolkit import policies as bounds
from toolkit.cli.group import cli, tags_option
from toolkit.errors import ToolkitError


def parity_options(command):
    """Tolerance, input and server options shared by `check` and `run`."""
    for decorator in reversed(
        [
            click.option(
                "--atol",
                "atol",
                multiple=True,
                metavar="[OUTPUT=]VALUE",
                help="Absolute tolerance added for non-quantized candidates, for all outputs or one (repeatable).",
            ),
            click.option(
                "--rtol",
                "rtol",
                multiple=True,
                metavar="[OUTPUT=]VALUE",
                help="Relative tolerance added for non-quantized candidates, for all outputs or one (repeatable).",
            ),
            click.option(
                "--session-ulps",
                type=click.FloatRange(0),
                metavar="N",
                default=bounds.SESSION_ULPS,
                show_default=True,
                help="Bound for our local server's gRPC/REST (a Session with Grappler), in ULPs of the output's scale.",
            ),
            click.option(
                "--float-ulps",
                type=click.FloatRange(0),
                metavar="N",
                default=bounds.FLOAT_ULPS,
                show_default=True,
                help="Bound for TFLite float32 files and --target/--rest-target servers, in ULPs of the "
                "output's scale.",
            ),
            click.option(
                "--quantized-atol",
                type=float,
                default=bounds.QUANTIZED_ATOL,
                show_default=True,
                help="Max score-output error allowed for quantized TFLite variants.",
            ),
            click.option(
                "--min-class-agreement",
                type=click.FloatRange(0, 1),
                default=bounds.MIN_CLASS_AGREEMENT,
                show_default=True,
                help="Class agreement a quantized variant must plausibly reach: it fails when its flips "
                "(near-threshold ones excluded) would be under 5% likely at this agreement.",
            ),
            click.option(
                "--max-ulps",
                type=click.FloatRange(0),
                metavar="N",
                default=bounds.INVARIANCE_ULPS,
                show_default=True,
                help="Bound on batch-1 vs batch-N differences, and on a repeated call, within one runtime, "
                "in ULPs of the output's scale.",
            ),
            click.option("--max-batch", type=click.IntRange(1), help="At most this many rows per request."),
            click.option(
                "--timeout",
                type=float,
                default=60.0,
                show_default=True,
                help="Seconds to wait for a server and its model to be AVAILABLE.",
            ),
            click.option(
                "--server-binary",
                metavar="PATH",
                help="Run the local server with this tensorflow_model_server instead of python -m serving.",
            ),
            click.option(
                "--host",
                default="127.0.0.1",
                show_default=True,
                help="Address the local python -m serving listens on (the real binary: every interface).",
            ),
            click.option(
                "--report",
                "report_dir",
                type=click.Path(file_okay=False),
                help="Write report.json, report.md and plots here [check: ./tfkit-report; run: OUT/report].",
            ),
            click.option("--junit", type=click.Path(dir_okay=False), help="Write a JUnit XML file for CI."),
        ]
    ):
        command = decorator(command)
    return command


def check_options(atol, rtol, **fields):
    from toolkit.parity.check import CheckOptions
    from toolkit.parity.compare import parse_overrides

    return CheckOptions(atol=parse_overrides(atol, "--atol"), rtol=parse_overrides(rtol, "--rtol"), **fields)


def progress(message: str) -> None:
    click.echo(f"tfkit: {message}", err=True)


DEFAULT_CHECK_REPORT = "tfkit-report"


def finish_check(ctx, result, report_dir, junit) -> None:
    """Print the verdict, write the requested reports, exit 1 on a mismatch."""
    from toolkit.parity import report

    click.echo(report.summary(result))
    paths = report.write_report(result, report_dir)
    click.echo(f"report: {paths['markdown']} and {paths['json']} ({len(paths['plots'])} plots)")
    if result.saved_outputs:
        click.echo(f"outputs: {result.saved_outputs}")
    if junit:
        click.echo(f"junit: {report.write_junit(result, junit)}")
    if not result.passed:
        ctx.exit(1)


@cli.command()
@click.argument("model", type=click.Path(), required=False)
@click.option(
    "--tflite",
    "tflite",
    multiple=True,
    type=click.Path(),
    metavar="FILE",
    help="TFLite file(s) to check (default: model*.tflite in the version, else convert).",
)
@click.option("--no-convert", is_flag=True, help="Do not convert the SavedModel when it has no .tflite file.")
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="HOST:PORT",
    help="A running TF Serving's gRPC address (repeatable: each replica is checked).",
)
@click.option(
    "--rest-target",
    "rest_targets",
    multiple=True,
    metavar="URL",
    help="A running TF Serving's REST address, e.g. http://host:8501 (repeatable).",
)
@click.option("--no-server", is_flag=True, help="Do not start a local server when no --target is given.")
@click.option("--model-name", help="Model name on the server (default: the model folder's name).")
@click.option(
    "--signature",
    default=None,
    help="Signature to call (the SavedModel's signature key). Default: the --load-outputs file's, "
    "else serving_default.",
)
@tags_option
@click.option(
    "--inputs",
    multiple=True,
    metavar="FILE",
    help=".npz with one array per input name (bytes kept whole as NAME.bytes uint8 + NAME.lengths), "
    "or TFRecord files of PredictionLogs (TF Serving warmup files or request logs: repeatable, "
    "globs expanded; logged responses become the runtime logged:FILE).",
)
@click.option("--samples", type=int, default=64, show_default=True, help="Generated rows (foreign models).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of generated inputs.")
@click.option(
    "--value-range",
    type=(float, float),
    default=None,
    metavar="LOW HIGH",
    help="Range of every generated number (default per dtype: floats [-1, 1], 8/16-bit integers "
    "their whole range, wider integers [0, 9]).",
)
@click.option(
    "--load-outputs",
    "load_outputs",
    multiple=True,
    type=click.Path(),
    metavar="FILE",
    help="Stored outputs as one more runtime each (repeatable): a golden file (.json or .npz, e.g. "
    "VERSION/assets.extra/tfkit_golden/serving_default.json), a --save-outputs file, or a "
    "tfkit-edge report.json or its folder. Their recorded inputs are fed to every runtime. Without "
    "MODEL the first one is the reference.",
)
@click.option(
    "--save-outputs",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write every runtime's inputs and outputs to FILE.json + FILE.npz (the golden format).",
)
@click.option(
    "--allow-model-mismatch",
    is_flag=True,
    help="Judge --load-outputs recorded for another SavedModel (its sha256 differs) instead of exiting 2.",
)
@parity_options
@click.pass_context
def check(
    ctx,
    model,
    tflite,
    no_convert,
    targets,
    rest_targets,
    no_server,
    model_name,
    signature,
    tags,
    inputs,
    samples,
    seed,
    value_range,
    load_outputs,
    save_outputs,
    allow_model_mismatch,
    report_dir,
    junit,
    **tolerances,
):
    """Prove eager TF, TF Serving (gRPC, REST) and TFLite agree on MODEL.

    MODEL is a SavedModel version folder or a model folder of versions (the
    latest is checked). Without MODEL, --load-outputs files are compared with
    each other and with --target/--rest-target servers. Exit 0 all judged runtimes pass (a runtime tfkit added
    on its own that cannot run this model, such as an on-the-fly TFLite
    conversion, is named "not run"), 1 a mismatch, 2 usage or input error,
    3 a server never became ready or has no such model. Every run writes
    report.json, also one that ends in an error.
    """
    from toolkit.parity.check import check as run_check

    report_dir = report_dir or DEFAULT_CHECK_REPORT
    with error_report(report_dir, model):
        options = check_options(
            **tolerances,
            signature=signature,
            tags=tags,
            tflite=list(tflite),
            convert=not no_convert,
            targets=list(targets),
            rest_targets=list(rest_targets),
            local_server=not no_server,
            model_name=model_name,
            inputs=list(inputs),
            samples=samples,
            seed=seed,
            value_range=value_range,
            work_dir=report_dir,
            load_outputs=list(load_outputs),
            save_outputs=save_outputs,
            allow_model_mismatch=allow_model_mismatch,
        )
        result = run_check(model, options, progress=progress)
    finish_check(ctx, result, report_dir, junit)


@contextlib.contextmanager
def error_report(report_dir, model):
    """Write report.json/report.md with the error when the check ends in one (exit 2 or 3), then re-raise."""
    try:
        yield
    except ToolkitError as exc:
        from toolkit.parity import report

        # An unwritable report folder must not hide the error that ended the check.
        with contextlib.suppress(ToolkitError):
            report.write_error_report(report_dir, exc, model)
        raise
