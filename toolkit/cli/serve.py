"""`tfkit serve` and `tfkit predict`: a model server, and rows sent to any runtime."""

import click

from toolkit.cli.group import cli, tags_option


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("model", required=False, type=click.Path())
@click.option("--name", help="Model name (default: the model folder's name).")
@click.option("--port", type=int, default=8500, show_default=True, help="gRPC port.")
@click.option("--rest-port", type=int, default=8501, show_default=True, help="REST port (0: no REST).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 for every interface (tensorflow_model_server "
    "always listens on every interface).",
)
@click.option("--server-binary", metavar="PATH", help="Run this tensorflow_model_server instead of ours.")
@click.option("--prefer-binary", is_flag=True, help="Use tensorflow_model_server from PATH when there is one.")
@click.argument("server_flags", nargs=-1, type=click.UNPROCESSED)
def serve(model, name, port, rest_port, host, server_binary, prefer_binary, server_flags):
    """Serve MODEL with our TF-Serving-compatible server (python -m serving) or
    the real tensorflow_model_server.

    MODEL is a model folder of versions or one version folder (served pinned).
    Further flags are passed to the server unchanged, spelled as for
    tensorflow_model_server, e.g. `tfkit serve models/logreg --enable_batching`.
    Our server listens on 127.0.0.1 unless --host says otherwise; the real
    tensorflow_model_server always listens on every interface.
    """
    import os

    from toolkit.serve import find_server_binary, serve_command

    binary = find_server_binary(server_binary) if server_binary or prefer_binary else None
    command = serve_command(model, name, port, rest_port, binary, server_flags)
    click.echo(f"tfkit: exec {' '.join(command)}", err=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if binary:
        click.echo(f"tfkit: {binary} listens on every interface (--host applies to python -m serving)", err=True)
    else:
        from serving import DRAIN_GRACE_ENV, LISTEN_HOST_ENV

        os.environ[LISTEN_HOST_ENV] = host
        os.environ.setdefault(DRAIN_GRACE_ENV, "0")  # Ctrl-C stops at once, as the binary does
    os.execvp(command[0], command)


@cli.command()
@click.argument("source", required=False, type=click.Path())
@click.option("--target", metavar="HOST:PORT", help="Send to a running TF Serving over gRPC.")
@click.option("--rest-target", metavar="URL", help="Send to a running TF Serving over REST.")
@click.option("--model-name", help="Model name on the server (required with --target/--rest-target).")
@click.option(
    "--signature",
    default="serving_default",
    show_default=True,
    help="Signature to call (the SavedModel's signature key).",
)
@tags_option
@click.option("--inputs", type=click.Path(dir_okay=False), help=".npz with one array per input name.")
@click.option("--json", "json_text", metavar="JSON", help="e.g. '{\"features\": [[1.0, 2.0]]}' or '[[1.0, 2.0]]'.")
@click.option("--csv", "csv_text", metavar="ROWS", help="One input's rows, e.g. '1,2;3,4'.")
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for the server to connect and for each answer.",
)
def predict(source, target, rest_target, model_name, signature, tags, inputs, json_text, csv_text, timeout):
    """Send a few rows to a SavedModel, a .tflite file or a server; print the outputs as JSON.

    A server gets only the inputs given: it fills in those with a default and answers for the rest.
    """
    import json

    import numpy as np

    from toolkit.errors import InputError
    from toolkit.parity.inputs import literal_feed, npz_feeds
    from toolkit.predict import predict_runner

    if sum(x is not None for x in (inputs, json_text, csv_text)) != 1:
        raise InputError("give exactly one of --inputs, --json or --csv")
    with predict_runner(source, target, rest_target, model_name, signature, timeout, tags) as runner:
        if inputs:
            feeds = npz_feeds(inputs, runner.signature).feeds[0].calls
        else:
            feeds = [literal_feed(runner.signature, json_text, csv_text)]
        for feed in feeds:
            outputs = runner.infer(feed)
            click.echo(
                json.dumps(
                    {
                        k: np.vectorize(lambda b: b.decode(errors="replace"), otypes=[object])(v).tolist()
                        if v.dtype.kind in "OS"
                        else v.tolist()
                        for k, v in sorted(outputs.items())
                    }
                )
            )
