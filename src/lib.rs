//! state-manager library.
