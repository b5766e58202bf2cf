"""`tfkit` and `python -m toolkit`: the full toolkit's command line, or, where only the device
checker is installed (`pip install tfkit` without the `full` extra), a one-line hint."""

import sys

#: what only the `full` extra installs
FULL_ONLY = ("click", "tensorflow", "tensorflow_serving", "grpc", "grpc_health", "matplotlib", "yaml")


def main():
    """Console-script entry point."""
    try:
        from toolkit.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in FULL_ONLY:
            raise
        print(
            f"Error: the full toolkit is not installed (no module {exc.name}): pip install 'tfkit[full]'; "
            "this environment has the device checker only: tfkit-edge check VERSION_DIR",
            file=sys.stderr,
        )
        sys.exit(2)
    cli_main()


if __name__ == "__main__":
    main()
