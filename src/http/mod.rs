//! The HTTP control plane.
