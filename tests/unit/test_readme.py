"""Every `mdp` command the README shows must name real subcommands and options, so that the
manual cannot rot as the CLI changes (the commands' behaviour is what the other tests run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from marketdata.settings import Settings
from mdp.cli import cli

README = Path(__file__).resolve().parents[2] / "README.md"
_PLACEHOLDERS = re.compile(r"[\[\]…<>|]|\bN\b|SECONDS|FILE")


def _commands() -> list[str]:
    """Commands in ``sh`` blocks, and inline ones that give options; ``--help`` left out."""
    text = README.read_text()
    lines = [line for block in re.findall(r"```sh\n(.*?)```", text, re.S)
             for line in block.splitlines()]  # fmt: skip
    lines += [span for span in re.findall(r"`((?:\./scripts/run|(?:\.venv/bin/)?mdp) [^`]+)`", text)
              if " --" in span and "--help" not in span]  # fmt: skip
    commands = []
    for line in lines:
        words = shlex.split(line.split("#", 1)[0])
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            words.pop(0)  # VAR=value before the command
        if not words or _PLACEHOLDERS.search(" ".join(words)):
            continue
        if words[0] == "./scripts/run":
            commands.append(shlex.join(["run", *words[1:]]))
        elif words[0] in ("mdp", ".venv/bin/mdp"):
            commands.append(shlex.join(words[1:]))
    return sorted(set(commands))


def _parse(args: list[str]) -> None:
    """Resolve the subcommands and parse the last one's options as click would, without
    running anything."""
    command: click.Command = cli
    context = click.Context(cli, info_name="mdp")
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name, *args = args
        found = command.get_command(context, name)
        assert found is not None, f"no such command: {name}"
        command = found
        context = click.Context(command, info_name=name, parent=context)
    command.parse_args(context, list(args))


COMMANDS = _commands()


def test_the_readme_shows_commands() -> None:
    assert len(COMMANDS) >= 10
    assert "run --duration 60" in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_parses(command: str) -> None:
    _parse(shlex.split(command))


def test_every_setting_is_in_the_configuration_table() -> None:
    text = README.read_text()
    table = text[text.index("## Configuration") : text.index("## Operations")]
    missing = [f.alias for f in Settings.model_fields.values() if f"`{f.alias}`" not in table]
    assert missing == []
