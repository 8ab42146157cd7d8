//! The state engines in-process, against real files and real storage (the local backend and
//! the moto S3 server): the state database, the storage backends, replication, checkpoints and
//! the lease. Nothing here starts the supervisor, so children of the test process (moto, re-run
//! copies of this binary killed mid-write) are waited for with std.

#[path = "../common/mod.rs"]
mod common;

mod checkpoint;
mod events;
mod lease;
mod objstore;
mod replication;
mod store;
