"""Fail (exit 1) unless the installed torch is the pinned CPU build and no CUDA wheel came with it.

CI runs this after every install: an extra that asks for a bare `torch` (lightning, transformers,
keras) would otherwise replace the CPU build with a multi-GB CUDA one without any error.
"""

from __future__ import annotations

import importlib.metadata as md
import sys


def main() -> int:
    try:
        version = md.version("torch")
    except md.PackageNotFoundError:
        print("check_torch_cpu: torch is not installed", file=sys.stderr)
        return 1
    cuda = sorted(d.metadata["Name"] for d in md.distributions() if (d.metadata["Name"] or "").lower().startswith("nvidia-"))
    if not version.startswith("2.13.0") or "+cu" in version or cuda:
        print(
            f"check_torch_cpu: torch {version} with CUDA packages {cuda or 'none'}; expected the CPU build 2.13.0",
            file=sys.stderr,
        )
        return 1
    print(f"check_torch_cpu: torch {version}, no CUDA packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
