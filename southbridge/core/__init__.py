"""Core: buses, permissions, clock and timers, IRQ lines, tracing."""
