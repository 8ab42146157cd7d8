//! The `state-manager` binary as users run it: as PID 1 and a container entrypoint, the token
//! command and the operator CLI `ctl`. Nothing here starts the service in-process, so each test
//! waits for its own children (in-process nodes, whose reaper collects every child of the test
//! process, are in `tests/service`).

#[path = "../common/mod.rs"]
mod common;

mod ctl;
mod entrypoint;
mod preflight;
mod token;
