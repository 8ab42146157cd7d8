//! Continuous replication of the state database to storage.
