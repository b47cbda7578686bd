"""``python -m truto_airflow.emulator serve ...`` (same as the ``truto-emulator`` script)."""

from __future__ import annotations

from truto_airflow.emulator.cli import main

raise SystemExit(main())
