//! The state database (issue: durable state).
