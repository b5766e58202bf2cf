"""README.md and docs/ stay true: a short front door, links that resolve, and only commands, flags,
source files and library names that exist; docs/cli.md covers every option, docs/artifacts.md every
report.json field.

What counts as "mentioned": code, i.e. fenced blocks and `inline spans`. A command line is checked
against the program it runs: `tfkit ...` (or `python -m toolkit ...`) against that command's click
options, `tfkit-edge ...` against the device checker's argparse options, `python -m serving` /
`tensorflow_model_server` against serving.flags, `python -m reliability`
/ `scripts/soak` and `python -m benchmarks` / `scripts/bench` against their --help. Lines running other
programs (kubectl, docker, curl) are not checked. A span that starts with a flag must be a flag of one
of our programs. `toolkit.x.y` names are looked up in the source (parsed, not imported) and
`toolkit/...`-style paths on disk.
"""

import ast
import contextlib
import io
import json
import re
from functools import cache
from pathlib import Path

import click
import pytest

from benchmarks.__main__ import main as bench_main
from reliability.__main__ import main as reliability_main
from serving.flags import FLAGS
from toolkit.cli import cli
from toolkit.edge.cli import main as edge_main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CLI_REFERENCE = ROOT / "docs" / "cli.md"
ARTIFACTS = ROOT / "docs" / "artifacts.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.M)
FLAG = re.compile(r"^(--[A-Za-z][\w-]*|-[A-Za-z])(=.*)?$")
# Tokens that end one shell command (the next program starts after them).
TERMINATORS = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1"}
SOURCE_DIRS = ("toolkit", "serving", "reliability", "benchmarks", "tests", "scripts", "docs")
PACKAGES = ("toolkit", "serving", "reliability", "benchmarks")


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _prose(text: str) -> str:
    """The page without fenced blocks or inline code (where links live)."""
    return INLINE.sub("", FENCE.sub("", text))


def _fenced_commands(text: str) -> list[str]:
    """Each line of each fenced block, with backslash continuations joined."""
    lines = []
    for block in FENCE.finditer(text):
        body = block.group(0).split("\n", 1)[1].rsplit("\n", 1)[0]
        lines += re.sub(r"\\\n\s*", " ", body).splitlines()
    return lines


def _inline_spans(text: str) -> list[str]:
    return INLINE.findall(FENCE.sub("", text))


def _segments(line: str) -> list[list[str]]:
    """Whitespace tokens of each command on a line, split at shell operators and cut at a comment."""
    segments, current = [], []
    for token in line.split():
        if token.startswith("#"):
            break
        if token in TERMINATORS:
            segments.append(current)
            current = []
        elif token.startswith("$("):  # a command substitution runs another program
            segments.append(current)
            current = [token[2:]]
        else:
            current.append(token)
    return [*segments, current]


def _flags(tokens) -> list[str]:
    return [m.group(1) for m in map(FLAG.match, tokens) if m]


# -- what our programs accept ---------------------------------------------------------


def _click_commands(group=cli, path=("tfkit",)):
    """(command path, command) for the group and every command below it."""
    yield path, group
    if isinstance(group, click.Group):
        for name, command in group.commands.items():
            yield from _click_commands(command, (*path, name))


def _click_options(command) -> set[str]:
    params = command.get_params(click.Context(command))
    return {name for p in params if isinstance(p, click.Option) for name in (*p.opts, *p.secondary_opts)}


def _argparse_flags(main, argv) -> set[str]:
    """Options an argparse program lists in its --help."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-h)\b", out.getvalue()))


SERVER_FLAGS = {f"--{name}" for name, *_ in FLAGS} | {"--help"}


@cache
def _reliability_flags(*argv: str) -> frozenset:
    return frozenset(_argparse_flags(reliability_main, list(argv)))


@cache
def _bench_flags() -> frozenset:
    return frozenset(_argparse_flags(bench_main, []))


@cache
def _edge_flags(*argv: str) -> frozenset:
    return frozenset(_argparse_flags(edge_main, list(argv)))


@cache
def _every_flag() -> frozenset:
    flags = set(SERVER_FLAGS) | _bench_flags()
    for _, command in _click_commands():
        flags |= _click_options(command)
    for subcommand in ("soak", "fuzz", "break"):
        flags |= _reliability_flags(subcommand)
    return frozenset(flags | _edge_flags("check"))


def _resolve_tfkit(words: list[str]):
    """The click command `tfkit WORDS...` runs and the words left for it, or None and the unknown name."""
    command, rest = cli, list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        command = command.get_command(click.Context(command), name)
        if command is None:
            return None, name
    return command, rest


def _program(tokens: list[str], i: int) -> str | None:
    """Which of our programs token i starts: tfkit, edge (tfkit-edge), server, reliability or bench."""
    token, module = tokens[i], tokens[i - 1 : i + 1] if i else []
    if token == "tfkit" or token.endswith("/tfkit") or module == ["-m", "toolkit"]:
        return "tfkit"
    if token == "tfkit-edge" or token.endswith("/tfkit-edge") or module == ["-m", "toolkit.edge"]:
        return "edge"
    if token == "tensorflow_model_server" or module == ["-m", "serving"]:
        return "server"
    if token == "scripts/soak" or module == ["-m", "reliability"]:
        return "reliability"
    if token == "scripts/bench" or module == ["-m", "benchmarks"]:
        return "bench"
    return None


def _command_problems(tokens: list[str]) -> list[str]:
    """What is wrong with one command line, if it runs one of our programs."""
    joined = " ".join(tokens)
    for i in range(len(tokens)):
        program, rest = _program(tokens, i), tokens[i + 1 :]
        if program == "tfkit":
            command, rest = _resolve_tfkit(rest)
            if command is None:
                return [f"`{joined}`: tfkit has no command {rest!r}"]
            allowed, what = _click_options(command), f"an option of tfkit {command.name}"
            if command.name == "serve":  # passes further flags to the server
                allowed |= SERVER_FLAGS
        elif program == "server":
            allowed, what = SERVER_FLAGS, "a server flag"
        elif program == "reliability":
            if tokens[i] == "scripts/soak":
                argv = ["soak"]
            else:  # python -m reliability SUBCOMMAND
                argv = [word for word in rest[:1] if not word.startswith("-")]
                rest = rest[len(argv) :]
            allowed, what = _reliability_flags(*argv), f"an option of reliability {' '.join(argv)}"
        elif program == "bench":
            allowed, what = _bench_flags(), "an option of scripts/bench"
        elif program == "edge":
            argv = [word for word in rest[:1] if not word.startswith("-")]
            if argv not in ([], ["check"]):
                return [f"`{joined}`: tfkit-edge has no command {argv[0]!r}"]
            rest = rest[len(argv) :]
            allowed, what = _edge_flags(*argv), f"an option of {' '.join(['tfkit-edge', *argv])}"
        else:
            continue
        return [f"`{joined}`: {flag} is not {what}" for flag in _flags(rest) if flag not in allowed]
    return []


# -- library names and source paths ---------------------------------------------------


def _module_file(dotted: list[str]) -> Path | None:
    base = ROOT.joinpath(*dotted)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _defines(body, name: str):
    """The top-level def/class/assignment/import called `name` in an AST body, if any."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return node
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return node
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (alias.asname or alias.name.split(".")[0]) == name for alias in node.names
        ):
            return node
    return None


def _library_name_exists(dotted_name: str) -> bool:
    """Whether `pkg.module.Name[.attr]` names a module, or something defined in one (read, not imported)."""
    parts = dotted_name.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(parts[:cut])
        if module is None:
            continue
        scope = ast.parse(module.read_text()).body
        for attr in parts[cut:]:
            node = _defines(scope, attr)
            if node is None:
                return False
            scope = getattr(node, "body", [])
        return True
    return False


def _library_names(span: str) -> list[str]:
    match = re.match(rf"((?:{'|'.join(PACKAGES)})(?:\.\w+)+)", span)
    return [match.group(1)] if match else []


def _source_path(span: str) -> str | None:
    match = re.fullmatch(rf"((?:{'|'.join(SOURCE_DIRS)})/[\w./-]*)", span)
    return match.group(1) if match else None


# -- the tests ------------------------------------------------------------------------


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in {_slug(h) for h in HEADING.findall(linked.read_text())}:
            broken.append(f"{target}: no heading with that anchor in {linked.name}")
    assert not broken, f"{_page_id(page)}: " + "; ".join(broken)


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in LINK.findall(README.read_text())}
    missing = [_page_id(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_commands_and_flags_exist(page):
    text = page.read_text()
    problems = []
    for line in _fenced_commands(text) + _inline_spans(text):
        for tokens in _segments(line):
            problems += _command_problems(tokens)
    for span in _inline_spans(text):
        if span.startswith("--"):
            problems += [
                f"`{span}`: {flag} is not a flag of any of our programs"
                for flag in _flags(span.split())
                if flag not in _every_flag()
            ]
    assert not problems, f"{_page_id(page)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_library_names_and_source_paths_exist(page):
    spans = _inline_spans(page.read_text())
    missing = [name for span in spans for name in _library_names(span) if not _library_name_exists(name)]
    missing += [path for path in map(_source_path, spans) if path and not (ROOT / path).exists()]
    assert not missing, f"{_page_id(page)} names what does not exist: {missing}"


def _cli_sections() -> dict[str, str]:
    """docs/cli.md's text under each heading that names a command, e.g. '### `tfkit deploy config`'."""
    text, sections = CLI_REFERENCE.read_text(), {}
    starts = [(m.start(), re.search(r"`(tfkit[\w -]*)`", m.group(1))) for m in HEADING.finditer(text)]
    for (start, name), (end, _) in zip(starts, [*starts[1:], (len(text), None)], strict=True):
        if name:
            sections[name.group(1).strip()] = text[start:end]
    return sections


@pytest.mark.parametrize(
    "path,command", [pytest.param(p, c, id=" ".join(p)) for p, c in _click_commands() if len(p) > 1]
)
def test_cli_reference_documents_every_option(path, command):
    sections = _cli_sections()
    name = " ".join(path)
    assert name in sections, f"docs/cli.md has no heading for `{name}`"
    undocumented = sorted(
        option
        for option in _click_options(command) - {"-h", "--help"}
        if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", sections[name])
    )
    assert not undocumented, f"docs/cli.md, `{name}`: options not described: {undocumented}"


@pytest.fixture(scope="module")
def report_json(exported_version, tmp_path_factory):
    """report.json of a real check of the tutorial export: in process, no server, the float TFLite file."""
    from toolkit.parity.check import CheckOptions, check
    from toolkit.parity.report import write_report

    out = tmp_path_factory.mktemp("report")
    options = CheckOptions(tflite=[str(exported_version / "model.tflite")], local_server=False, work_dir=str(out))
    write_report(check(exported_version, options), out)
    return json.loads((out / "report.json").read_text())


def _schema_rows() -> dict[str, str]:
    """docs/artifacts.md's report.json table: each field named in the first column -> its meaning."""
    section = ARTIFACTS.read_text().split("\n## report.json\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            first, *_, meaning = line.strip("|").split(" | ")
            rows.update(dict.fromkeys(INLINE.findall(first), meaning))
    return rows


def test_report_schema_documents_every_field(report_json):
    rows = _schema_rows()
    assert set(report_json) == set(rows), "docs/artifacts.md's report.json table and the real report differ"
    undocumented = []
    for field, value in report_json.items():
        items = value.values() if field == "policies" else value if isinstance(value, list) else [value]
        keys = {key for item in items if isinstance(item, dict) for key in item}
        undocumented += [f"{field}.{key}" for key in sorted(keys) if f"`{key}`" not in rows[field]]
    assert not undocumented, f"docs/artifacts.md, report.json: fields not described: {undocumented}"
