"""A local, faithful stand-in for the Truto API (see README, "Testing against the emulator")."""
