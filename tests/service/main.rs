//! The service in-process: the supervisor with real child processes, probes, hooks, managed
//! ports, leftovers of earlier runs, webhooks, and the HTTP API on 127.0.0.1:0. One reaper
//! (`state_manager::proc`) collects every child of this test process.

#[path = "../common/mod.rs"]
mod common;

mod hooks;
mod http;
mod leftovers;
mod ports;
mod probes;
mod supervisor;
mod webhooks;
