"""How many KumoMTA policies load and route here unchanged (issue 18), and what stops the rest.

    python -m relaystream_devkit.kumo_tally extract-docs MIRROR OUT
        writes the complete Lua policies of KumoMTA's docs (fenced ```lua blocks with
        `kumo.on(` or `require 'kumo'`) from the bare git repository MIRROR into OUT/;
    python -m relaystream_devkit.kumo_tally run FOLDER [--jobs N] [--list]
        runs `relaystream route --policy FILE --sender a@example.com --recipient
        b@example.net` on every .lua file under FOLDER (from the file's own folder, so its data
        files are found) and prints loaded/total and the most common first errors.

Both folders stay outside the repository: KumoMTA's files are read, never copied into it.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^```lua[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_COMPLETE = re.compile(r"kumo\.on\s*\(|require\s*\(?\s*['\"]kumo['\"]")
# What varies between two errors of the same cause: file names, line numbers, quoted values.
_LOCATION = re.compile(r"^[^\s:]+\.lua:\d+: ")
_ROUTE_PREFIX = "relaystream route: "
_SECONDS_PER_POLICY = 60
_ENVELOPE = ("--sender", "a@example.com", "--recipient", "b@example.net")
# `relaystream` itself, in this interpreter (the console script may be another checkout's).
_CLI = "import sys; from relaystream.cli.main import main; sys.argv[0] = 'relaystream'; main()"


def extract_docs(mirror: Path, out: Path) -> int:
    """Writes each complete policy of the docs as OUT/<doc path with _>-<n>.lua."""
    names = subprocess.run(
        ["git", "-C", str(mirror), "ls-tree", "-r", "--name-only", "HEAD", "docs"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for name in names:
        if not name.endswith(".md"):
            continue
        text = subprocess.run(
            ["git", "-C", str(mirror), "show", f"HEAD:{name}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for index, match in enumerate(_FENCE.finditer(text), start=1):
            block = match.group(1)
            if _COMPLETE.search(block):
                stem = name.removeprefix("docs/").removesuffix(".md").replace("/", "_")
                (out / f"{stem}-{index}.lua").write_text(block, encoding="utf-8")
                count += 1
    return count


@dataclass(frozen=True, slots=True)
class Outcome:
    path: Path
    returncode: int
    first_error: str


def route(path: Path) -> Outcome:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CLI, "route", "--policy", path.name, *_ENVELOPE],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=_SECONDS_PER_POLICY,
        )
    except subprocess.TimeoutExpired:
        return Outcome(path, -1, f"no answer within {_SECONDS_PER_POLICY} s")
    error = ""
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith(_ROUTE_PREFIX) and not line.startswith(
            (_ROUTE_PREFIX + "INFO", _ROUTE_PREFIX + "WARNING")
        ):
            error = line.removeprefix(_ROUTE_PREFIX)
            break
        if line.startswith("error "):
            error = line
            break
    return Outcome(path, done.returncode, error)


def blocker(error: str) -> str:
    """The error without its location: errors of one cause read the same."""
    return _LOCATION.sub("", error)[:140]


def run(folder: Path, jobs: int, listing: bool) -> None:
    paths = sorted(folder.rglob("*.lua"))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = list(pool.map(route, paths))
    loaded = [outcome for outcome in outcomes if outcome.returncode == 0]
    print(f"{folder}: {len(loaded)}/{len(outcomes)} load and route (exit 0)")
    if listing:
        for outcome in outcomes:
            relative = outcome.path.relative_to(folder)
            print(f"{outcome.returncode}\t{relative}\t{outcome.first_error[:200]}")
    counts = collections.Counter(
        blocker(outcome.first_error) for outcome in outcomes if outcome.returncode != 0
    )
    print("first errors, most common first:")
    for text, count in counts.most_common():
        print(f"{count:5d}  {text}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="kumo_tally", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    extract = commands.add_parser("extract-docs")
    extract.add_argument("mirror", type=Path)
    extract.add_argument("out", type=Path)
    tally = commands.add_parser("run")
    tally.add_argument("folder", type=Path)
    tally.add_argument("--jobs", type=int, default=2)
    tally.add_argument("--list", action="store_true", help="one line per policy")
    args = parser.parse_args()
    if args.command == "extract-docs":
        print(f"{extract_docs(args.mirror, args.out)} policies written to {args.out}")
    else:
        run(args.folder.resolve(), args.jobs, args.list)


if __name__ == "__main__":
    main()
