//! Fuzzes `CursorCodec::decode`: arbitrary client input must be refused or accepted, never panic.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use pagegate::{CursorCodec, CursorKey, binding_hash, route_id};

static CODEC: LazyLock<Option<CursorCodec>> = LazyLock::new(|| {
    let keys = (1..=2)
        .map(|id| CursorKey {
            id,
            secret: vec![b'k' + id; 32],
        })
        .collect();
    CursorCodec::new(keys, Some(Duration::from_secs(3600)))
});

fuzz_target!(|data: &[u8]| {
    let Some(codec) = CODEC.as_ref() else {
        return;
    };
    let Ok(cursor) = std::str::from_utf8(data) else {
        return;
    };
    let route = route_id("items");
    let binding = binding_hash(cursor.split('&'));
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    for arity in 0..=2 {
        let _ = codec.decode(cursor, route, binding, arity, now);
    }
    let _ = codec.decode(cursor, route, 0, 1, SystemTime::UNIX_EPOCH);
});
