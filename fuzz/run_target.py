"""One fuzz target under atheris: `python -m fuzz.run_target TARGET [libFuzzer flags]`."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["authgate"]):
    from fuzz.targets import TARGETS


def main() -> None:
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
