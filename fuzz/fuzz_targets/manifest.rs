//! Checkpoint manifests as read from storage (`Manifest::from_slice`) and checkpoint ids as read
//! from URLs and keys: any bytes are a valid manifest or a refusal that says why; a valid one
//! stays the same through its own serialization.

#![no_main]

use libfuzzer_sys::fuzz_target;
use state_manager::checkpoint::{CheckpointId, Manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(id) = CheckpointId::parse(text)
    {
        assert_eq!(id.as_str(), text);
    }
    let id = CheckpointId::parse("20260101T120000.000Z-0a1b2c3d").expect("a valid id");
    match Manifest::from_slice(&id, data) {
        Ok(m) => {
            let body = serde_json::to_vec(&m).expect("a manifest serializes");
            let back = Manifest::from_slice(&id, &body).expect("its own form is valid");
            assert_eq!(back, m);
        }
        Err(why) => assert!(!why.trim().is_empty(), "refused without a reason"),
    }
});
