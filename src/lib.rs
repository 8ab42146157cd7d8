//! state-manager: a container-native supervisor that keeps its processes and their state safe.
//!
//! Data flows one way: HTTP → handler → supervisor handle → actor → store → reply. See
//! `DESIGN.md` in the repository for the shape; each module's header says what it owns.

pub mod checkpoint;
pub mod config;
pub mod ctl;
pub mod events;
pub mod http;
pub mod lease;
pub mod objstore;
pub mod probes;
pub mod replication;
pub mod store;
