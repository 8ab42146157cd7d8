//! Request bodies through the one strict JSON reader (`http::extract::parse`) as each body type
//! the API takes, and a stack as `POST /processes` adds it: taken, or refused with a 400 or 422
//! whose detail says something. The first byte chooses the type; the rest is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use state_manager::config::{self, Config};
use state_manager::http::environment::{CheckpointBody, RestoreBody};
use state_manager::http::error::ApiError;
use state_manager::http::extract::parse;
use state_manager::http::lease::ReleaseBody;
use state_manager::http::procset::ScaleBody;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let result = match which % 5 {
        0 => parse::<CheckpointBody>(body).map(drop),
        1 => parse::<RestoreBody>(body).map(drop),
        2 => parse::<ReleaseBody>(body).map(drop),
        3 => parse::<ScaleBody>(body).map(drop),
        _ => {
            let Ok(stack) = parse::<serde_json::Value>(body) else {
                return;
            };
            if let Err(problems) = config::parse_stack_into(&Config::default(), stack) {
                assert!(!problems.is_empty(), "a stack refused without a problem");
                for p in problems {
                    assert!(!p.message.trim().is_empty(), "{p:?}");
                }
            }
            return;
        }
    };
    match result {
        Ok(()) => {}
        Err(ApiError::BadRequest(d) | ApiError::Unprocessable(d)) => {
            assert!(!d.trim().is_empty(), "a refusal without a detail")
        }
        Err(other) => panic!("a body refused with neither 400 nor 422: {other:?}"),
    }
});
