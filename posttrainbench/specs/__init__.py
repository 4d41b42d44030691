from posttrainbench.specs.agents import AgentSpec, parse_agent
from posttrainbench.specs.benchmarks import BenchmarkSpec, all_benchmarks, get_benchmark
from posttrainbench.specs.models import ModelSpec, all_models, get_model
from posttrainbench.specs.run import RunSpec

__all__ = [
    "AgentSpec",
    "BenchmarkSpec",
    "ModelSpec",
    "RunSpec",
    "all_benchmarks",
    "all_models",
    "get_benchmark",
    "get_model",
    "parse_agent",
]
