"""`upwatch import gatus CONFIG.yaml [-o upwatch.yaml]`: convert another monitor's configuration."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from upwatch.importers import gatus


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `import` and its sources to the upwatch CLI."""
    parser = commands.add_parser("import", help="convert another monitor's configuration to upwatch.yaml")
    sources = parser.add_subparsers(dest="import_source", metavar="SOURCE", required=True)
    source = sources.add_parser("gatus", help="a Gatus config.yaml (or a directory of them, as GATUS_CONFIG_PATH)")
    source.add_argument("source", metavar="CONFIG.yaml", help="the Gatus configuration file or directory")
    source.add_argument("-o", "--output", metavar="FILE", help="write the upwatch config here (default: stdout)")
    source.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    source.set_defaults(handler=cmd_import_gatus)


def cmd_import_gatus(args: argparse.Namespace) -> int:
    """Exit 0 once converted (what was left out is listed on stderr and in the file), 2 if it cannot be read."""
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.force:
        print(f"upwatch: {output} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        data = gatus.read(Path(args.source))
    except gatus.GatusError as e:
        print(f"upwatch: {e}", file=sys.stderr)
        return 2
    conversion = gatus.convert(data)
    text = gatus.render(conversion, str(args.source))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    _summary(conversion, output)
    return 0


def _summary(conversion: gatus.Conversion, output: Path | None) -> None:
    count = len(conversion.config.get("endpoints", []))
    lines = [f"upwatch import gatus: {count} endpoint{'s' if count != 1 else ''} converted"]
    for title, notes in (("not converted", conversion.skipped), ("converted, but different", conversion.changed)):
        if notes:
            lines += [f"{title} ({len(notes)}):"] + [f"  {note}" for note in notes]
    target = output or "the output"
    lines.append(f"check {target} with: upwatch check-config -c {output or 'FILE'}")
    print("\n".join(lines), file=sys.stderr)
