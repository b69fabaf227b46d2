"""Machines: the devices of a platform wired together."""
