"""pgprobe: train policy-gradient agents, checkpoint them, and probe what they really do."""

__version__ = "0.1.0"
