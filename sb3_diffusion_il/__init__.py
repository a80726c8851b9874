"""Score-matching imitation learning (SMILING) for Stable-Baselines3 and imitation."""

from sb3_diffusion_il.checkpoint import SaveCheckpoints, latest_checkpoint
from sb3_diffusion_il.cost import DiffusionScoreReward, diffusion_score_cost
from sb3_diffusion_il.data import expert_stats, load_demonstrations, normalized_return
from sb3_diffusion_il.diffusion import DiffusionSchedule
from sb3_diffusion_il.score_net import ScoreNetwork
from sb3_diffusion_il.trainer import DiffusionScoreIL

__version__ = "0.2.0"

__all__ = [
    "SaveCheckpoints",
    "DiffusionScoreIL",
    "DiffusionScoreReward",
    "DiffusionSchedule",
    "ScoreNetwork",
    "diffusion_score_cost",
    "expert_stats",
    "latest_checkpoint",
    "load_demonstrations",
    "normalized_return",
]
