//! The config file and `POST /config` / `PUT /config` bodies: any text is a valid config or a
//! list of problems that each say something; a valid config stays the same through its own
//! serialization, and resolving its processes does not panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use state_manager::config::{self, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse_with_env(text, |_| None) {
        Ok(c) => {
            let again = serde_json::to_string(&c).expect("a parsed config serializes");
            let back = config::parse_with_env(&again, |_| None).expect("its own form parses");
            assert_eq!(back, c, "changed through its own form: {again}");
            let _ = config::redacted(&c);
            let _ = config::resolve(&c, std::path::Path::new("/nonexistent/stacks"));
        }
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "refused without a problem");
            for p in problems {
                assert!(
                    !p.message.trim().is_empty(),
                    "a problem without a message: {p:?}"
                );
            }
        }
        Err(e) => assert!(!e.to_string().trim().is_empty()),
    }
});
