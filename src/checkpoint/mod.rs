//! Checkpoints of the environment directory.
