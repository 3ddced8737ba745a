"""The README tells the truth: every setting and command is documented, and the quick
start's two commands exist."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

from quotaledger.cli.main import COMMANDS
from quotaledger.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for setting in fields(Settings):
        variable = ENV_PREFIX + setting.name.upper()
        short = "_" + setting.name.upper()  # documented in a group such as `_PORT`
        assert variable in README or short in README, f"{variable} is not in the README"


def test_every_command_is_in_the_readme() -> None:
    for name in COMMANDS:
        assert f"quotaledger {name}" in README, f"`quotaledger {name}` is not in the README"


def test_the_quick_start_is_two_commands_that_exist() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick_start, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert commands == ["./scripts/serve", "./scripts/test", "./scripts/test --quick"]
    for command in commands:
        assert os.access(ROOT / command.split()[0], os.X_OK)


def test_ci_runs_the_readme_test_command() -> None:
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_every_relative_link_in_the_readme_is_a_file_in_the_repository() -> None:
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    relative = [t for t in targets if not re.match(r"[a-z]+:|#", t)]
    assert relative, "the README links to no file: has the pattern stopped matching?"
    for target in relative:
        path = (ROOT / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"README links outside the repository: {target}"
        assert path.is_file(), f"README links to a missing file: {target}"


def test_every_relative_link_in_the_docs_is_a_file_in_the_repository() -> None:
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:|#", target):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT), f"{page.name} links outside the repository"
            assert path.is_file(), f"{page.name} links to a missing file: {target}"


def test_every_shell_variable_the_readme_sends_is_set_before_its_first_use() -> None:
    for variable in ("ADMIN_TOKEN", "QUOTALEDGER_TOKEN"):
        first_use = README.index(f"${variable}")
        assert f"export {variable}=" in README[:first_use], f"${variable} is never set first"
