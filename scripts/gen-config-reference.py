#!/usr/bin/env python3
"""Prints docs/config-reference.md from the binaries' --help (so the reference cannot drift).

Usage: python3 scripts/gen-config-reference.py <bin dir> > docs/config-reference.md
"""
import re
import subprocess
import sys

BINARIES = ["flywheel-capture", "flywheel-clustering", "flywheel-annotation", "flywheel-evalset"]
FLAG = re.compile(r'^  --(\S+) \(env (\S+), default "(.*)"\)$')


def flags_of(path):
    text = subprocess.run([path, "--help"], capture_output=True, text=True, check=True).stdout
    lines = text.splitlines()
    flags = []
    for i, line in enumerate(lines):
        match = FLAG.match(line)
        if not match:
            continue
        help_lines = []
        for follow in lines[i + 1:]:
            if not follow.startswith("      "):
                break
            help_lines.append(follow.strip())
        flags.append((match.group(1), match.group(2), match.group(3), " ".join(help_lines)))
    return flags


def cell(text):
    return text.replace("|", "\\|") if text else "*(empty)*"


def main():
    bin_dir = sys.argv[1]
    per_binary = {name: flags_of(f"{bin_dir}/{name}") for name in BINARIES}
    common = set.intersection(*(set(f[0] for f in flags) for flags in per_binary.values()))
    out = ["# Configuration reference", "",
           "Generated from each binary's `--help` by `scripts/gen-config-reference.py`; do not edit.",
           "Every flag is also an environment variable (second column): a flag beats the",
           "environment, which beats the default. Durations use absl syntax (`250ms`, `30s`, `5m`).",
           "", "## Every service", "", "| flag | env | default | meaning |",
           "| --- | --- | --- | --- |"]
    for name, env, default, text in per_binary[BINARIES[0]]:
        if name in common:
            out.append(f"| `--{name}` | `{env}` | {cell(default)} | {cell(text)} |")
    for binary, flags in per_binary.items():
        own = [f for f in flags if f[0] not in common]
        out += ["", f"## {binary}", ""]
        if not own:
            out.append("No flags of its own.")
            continue
        out += ["| flag | env | default | meaning |", "| --- | --- | --- | --- |"]
        for name, env, default, text in own:
            out.append(f"| `--{name}` | `{env}` | {cell(default)} | {cell(text)} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
