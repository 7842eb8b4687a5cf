"""Synthetic ES futures and 0DTE options days written as real DBN, with planted level physics."""

from spymaster.synth.generate import DayFiles, generate, generate_day

__all__ = ["DayFiles", "generate", "generate_day"]
