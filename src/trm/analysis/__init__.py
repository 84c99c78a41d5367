"""Inside the recursion: recording trajectories, PCA landscapes, attractor statistics, sparse
autoencoders and interventions, as one report (`trm analyze`). See docs/analysis.md."""

from .dynamics import classify, lag_distances, lyapunov, plateau, settle_step, trajectory_modes
from .record import Recording, load_recording, record

__all__ = ["Recording", "classify", "lag_distances", "load_recording", "lyapunov", "plateau", "record",
           "settle_step", "trajectory_modes"]
