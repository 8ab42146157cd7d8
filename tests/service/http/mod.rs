//! The HTTP API end to end: the real server on 127.0.0.1:0, real child processes, reqwest.

mod auth;
mod clients;
mod config_flow;
mod console;
mod errors;
mod health;
mod metrics;
mod openapi;
mod openapi_schema;
mod processes;
mod prometheus;
mod streams;
mod support;
mod usage;
