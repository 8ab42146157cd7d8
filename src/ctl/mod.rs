//! `state-manager ctl`: the operator CLI over the HTTP API.
