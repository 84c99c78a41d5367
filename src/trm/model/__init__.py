from .trm import TRM, Carry, ModelConfig, StepOutput, count_parameters

__all__ = ["TRM", "Carry", "ModelConfig", "StepOutput", "count_parameters"]
