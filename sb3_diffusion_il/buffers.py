"""The learner-state buffer: the learner's features gathered so far, bounded.

Follow-the-leader refits the learner score on *all* learner data; to bound
memory the buffer keeps a sliding window of the newest ``capacity`` rows (the
reference keeps the newest 200k), stored as one preallocated float32 array.
"""

from typing import Any, Dict, Optional

import numpy as np
import torch as th


class LearnerStateBuffer:
    """A ring buffer of feature rows; once full, each new row replaces the oldest.

    :param capacity: the most rows kept
    :param dim: the feature dimension
    """

    def __init__(self, capacity: int, dim: int):
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be at least 1.")
        self.capacity = capacity
        self.rows = np.zeros((capacity, dim), dtype=np.float32)
        self.pos = 0
        self.full = False

    def __len__(self) -> int:
        return self.capacity if self.full else self.pos

    def add(self, x: np.ndarray) -> None:
        """Appends rows, overwriting the oldest ones once the buffer is full."""
        x = np.asarray(x, dtype=np.float32)[-self.capacity :]
        end = self.pos + len(x)
        first = min(len(x), self.capacity - self.pos)
        self.rows[self.pos : self.pos + first] = x[:first]
        self.rows[: len(x) - first] = x[first:]
        self.full = self.full or end >= self.capacity
        self.pos = end % self.capacity

    def newest(self, n: int) -> np.ndarray:
        """The ``n`` most recently added rows (fewer if the buffer holds fewer)."""
        n = min(n, len(self))
        idx = (self.pos - n + np.arange(n)) % self.capacity
        return self.rows[idx]

    def state_dict(self) -> Dict[str, Any]:
        """The rows held in storage order and the write position, for `load_state_dict`.

        Storage order (not age order) is kept so that sampling after a reload
        draws the same rows as it would have without one.
        """
        return {"capacity": self.capacity, "rows": th.from_numpy(self.rows[: len(self)].copy()), "pos": self.pos}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        rows = state["rows"].numpy()
        if state["capacity"] != self.capacity or rows.shape[1] != self.rows.shape[1]:
            raise ValueError(
                f"The saved learner-state buffer holds {state['capacity']} rows of dimension "
                f"{rows.shape[1]}, which does not fit this {self.capacity} x {self.rows.shape[1]} "
                "buffer: load with the saved learner_buffer_size and conditioning.",
            )
        self.rows[: len(rows)] = rows
        self.pos = state["pos"]
        self.full = len(rows) == self.capacity

    def sample(self, n: int, generator: Optional[th.Generator] = None) -> th.Tensor:
        """``n`` rows drawn uniformly with replacement."""
        if len(self) == 0:
            raise RuntimeError("Cannot sample from an empty learner-state buffer.")
        idx = th.randint(0, len(self), (n,), generator=generator).numpy()
        return th.from_numpy(self.rows[idx])
