//! The one place where Rust values meet SQLite columns: state names, change actions, stack
//! origins, intents, event kinds, storage states and kinds of failure as TEXT, times as UTC
//! nanoseconds (INTEGER), exit statuses as a (code, signal) pair of nullable INTEGERs.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use time::OffsetDateTime;

use super::{Result, StoreError};
use crate::events::{ChangeAction, ExitStatus, Intent, Origin, StateName};
use crate::feed::FeedKind;
use crate::objstore::{FailureKind, StorageState};

/// A TEXT column holding one of the words of an enum (`as_str` out, `FromStr` in).
macro_rules! text_column {
    ($ty:ty, $column:literal) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                text.parse().map_err(|_| {
                    FromSqlError::Other(Box::new(StoreError::Corrupt {
                        column: $column,
                        value: text.to_string(),
                    }))
                })
            }
        }
    };
}

text_column!(StateName, "state");
text_column!(ChangeAction, "change_action");
text_column!(Origin, "origin");
text_column!(Intent, "intent");
text_column!(FeedKind, "kind");
text_column!(StorageState, "storage_state");
text_column!(FailureKind, "failure_kind");

/// A time as stored: UTC nanoseconds since the epoch.
pub(super) fn time_to_sql(t: OffsetDateTime) -> Result<i64> {
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| StoreError::Invalid(format!("time {t} is outside the years 1678-2262")))
}

pub(super) fn time_from_sql(ns: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).map_err(|_| StoreError::Corrupt {
        column: "time",
        value: ns.to_string(),
    })
}

/// The (exit_code, exit_signal) column pair.
pub(super) fn exit_to_sql(exit: Option<ExitStatus>) -> (Option<i32>, Option<i32>) {
    match exit {
        None => (None, None),
        Some(ExitStatus::Code(c)) => (Some(c), None),
        Some(ExitStatus::Signal(s)) => (None, Some(s)),
    }
}

pub(super) fn exit_from_sql(code: Option<i32>, signal: Option<i32>) -> Result<Option<ExitStatus>> {
    match (code, signal) {
        (None, None) => Ok(None),
        (Some(c), None) => Ok(Some(ExitStatus::Code(c))),
        (None, Some(s)) => Ok(Some(ExitStatus::Signal(s))),
        (Some(c), Some(s)) => Err(StoreError::Corrupt {
            column: "exit_code/exit_signal",
            value: format!("{c}/{s}"),
        }),
    }
}

/// Unwrap a conversion error that a `FromSql` impl above boxed into rusqlite's error.
pub(super) fn unbox(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::FromSqlConversionFailure(_, _, inner) = e {
        return match inner.downcast::<StoreError>() {
            Ok(store) => *store,
            Err(other) => StoreError::Corrupt {
                column: "value",
                value: other.to_string(),
            },
        };
    }
    StoreError::Sqlite(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip_through_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for n in StateName::ALL {
            let back: StateName = conn.query_row("SELECT ?1", [n], |r| r.get(0)).unwrap();
            assert_eq!(back, n);
        }
        let err = conn
            .query_row("SELECT 'asleep'", [], |r| r.get::<_, StateName>(0))
            .unwrap_err();
        assert!(matches!(unbox(err), StoreError::Corrupt { value, .. } if value == "asleep"));
    }

    #[test]
    fn times_keep_nanoseconds() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_732_000_000_123_456_789).unwrap();
        assert_eq!(time_from_sql(time_to_sql(t).unwrap()).unwrap(), t);
    }

    #[test]
    fn exit_pairs() {
        for e in [None, Some(ExitStatus::Code(3)), Some(ExitStatus::Signal(9))] {
            let (c, s) = exit_to_sql(e);
            assert_eq!(exit_from_sql(c, s).unwrap(), e);
        }
        assert!(exit_from_sql(Some(1), Some(9)).is_err());
    }
}
