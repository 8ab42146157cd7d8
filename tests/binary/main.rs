//! The `state-manager` binary as users run it: as PID 1 and a container entrypoint, the token
//! command, the operator CLI `ctl`, and whole nodes handing an environment over.

#[path = "../common/mod.rs"]
mod common;

mod ctl;
mod entrypoint;
mod node;
mod token;
