"""PostTrainBench: measure how well LLM agents post-train base LLMs."""

__version__ = "0.1.0"
