"""pytest plugin: the ``truto_emulator`` fixture (filled in by the emulator work)."""
