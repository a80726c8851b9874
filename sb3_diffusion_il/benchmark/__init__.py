"""The benchmark suite, apart from the library: the task registry and its experts,
imitation's GAIL/AIRL/BC as baselines with the same learner, the comparison
harness and its report. It uses the library's public API; the library never
imports it."""
