//! The storage lease: one owner per environment.
