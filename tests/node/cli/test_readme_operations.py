"""Every ``idnode`` command line the README's Operations section shows is one the
command accepts: it parses whole, and ``--help`` of its subcommand exits 0."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from node.cli.entry import build_parser

README = Path(__file__).resolve().parents[3] / "README.md"
SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
ALIAS = "idnode="


def operations_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Operations\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def idnode_arguments(line: str) -> list[list[str]]:
    """The arguments of each idnode invocation on a shell line (``a && b``, ``sudo -u u``,
    ``VAR=value`` prefixes and the alias the section defines all understood)."""
    found = []
    for part in re.split(r"&&|\|\||;|\|", line):
        words = shlex.split(part)
        if words[:1] == ["alias"] and words[1].startswith(ALIAS):
            # The alias's options come before any subcommand: check them with one.
            found += [
                [*arguments, "settings"] for arguments in idnode_arguments(words[1][len(ALIAS) :])
            ]
            continue
        while words[:1] == ["sudo"]:
            words = words[3:] if words[1:2] == ["-u"] else words[1:]
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if words and Path(words[0]).name == "idnode":
            found.append(words[1:])
    return found


def commands() -> list[list[str]]:
    out = []
    for block in SHELL_BLOCK.findall(operations_section()):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                out += idnode_arguments(line)
    return out


COMMANDS = commands()


def subcommand_path(parser: argparse.ArgumentParser, arguments: list[str]) -> list[str]:
    """The subcommands named in ``arguments`` (``db restore``), options and their values
    skipped."""
    path: list[str] = []
    words = iter(arguments)
    for word in words:
        option = parser._option_string_actions.get(word)
        if option is not None:
            if option.nargs != 0:
                next(words, None)  # its value
            continue
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        path.append(word)
        parser = subs[0].choices[word]
    return path


def test_the_section_shows_the_operator_commands() -> None:
    shown = {" ".join(subcommand_path(build_parser(), c)) for c in COMMANDS}
    assert {"db backup", "db restore", "db shell", "db migrate", "keys rotate"} <= shown, shown


@pytest.mark.parametrize("arguments", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_each_command_parses_and_has_help(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    build_parser().parse_args(arguments)  # an unknown option or command exits 2
    path = subcommand_path(build_parser(), arguments)
    assert path, arguments
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*path, "--help"])
    assert exited.value.code == 0
    assert f"usage: idnode {' '.join(path)}" in capsys.readouterr().out
