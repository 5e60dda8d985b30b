#!/usr/bin/env python
"""Django's command-line utility for the control plane.

The Django source root is ./platform. It is put on sys.path as a *directory*, never imported
as a package named `platform` (that would shadow the standard library module).
"""

import os
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
