"""Domains: several guests in one process, a privileged one and user ones, host devices
hidden from the first and assigned to the others."""
