//! state-manager: a container-native supervisor that keeps its processes and their state safe.
//!
//! Data flows one way: HTTP → handler → supervisor handle → actor → store → reply, and imports
//! point down only (`docs/ARCHITECTURE.md` has the layers, the module map and who owns which
//! state; `make lint` checks the layers). Each module's header says what it owns.

pub mod app;
pub mod auth;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod datadir;
pub mod durable;
pub mod events;
pub mod feed;
pub mod hooks;
pub mod http;
pub mod lease;
pub mod logs;
pub mod memory;
pub mod node;
pub mod objstore;
pub mod ports;
pub mod probes;
pub mod proc;
pub mod replication;
pub mod retry;
pub mod service;
pub mod signals;
pub mod single;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod webhooks;
