//! The service in-process: the supervisor with real child processes, probes, hooks, managed
//! ports, leftovers of earlier runs, webhooks, the user and group a process runs as, the HTTP
//! API on 127.0.0.1:0, and whole nodes handing an environment over (in-process and as
//! binaries). One reaper (`state_manager::proc`) collects every child of this test process, so
//! tests here never count on `wait` for their own.

#[path = "../common/mod.rs"]
mod common;

mod hooks;
mod http;
mod leftovers;
mod node;
mod ports;
mod probes;
mod supervisor;
mod users;
mod webhooks;
