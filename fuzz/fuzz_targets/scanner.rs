//! Fuzzes `Scanner`: a body split anywhere must scan exactly as it does whole, never panic,
//! and, whenever `serde_json` accepts the body as an array, report the same item spans.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use pagegate::{DEFAULT_MAX_DEPTH, Event, ItemsPath, ScanError, Scanner};
use serde_json::value::RawValue;

/// Feeds `chunks` and finishes: every event, or the error.
fn scan(chunks: &[&[u8]], max_depth: usize) -> Result<Vec<Event>, ScanError> {
    let mut scanner = Scanner::new(ItemsPath(Vec::new()), max_depth);
    let mut events = Vec::new();
    for chunk in chunks {
        let flow = scanner.feed(chunk, |event| {
            events.push(event);
            ControlFlow::Continue(())
        })?;
        assert_eq!(flow, ControlFlow::Continue(()));
    }
    scanner.finish()?;
    Ok(events)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split) % (body.len() + 1);
    let (head, tail) = body.split_at(cut);

    // `serde_json` does not limit the depth of raw values; neither does this comparison.
    let unlimited = usize::MAX;
    let whole = scan(&[body], unlimited);
    assert_eq!(scan(&[head, tail], unlimited), whole);
    let limited = scan(&[head, tail], DEFAULT_MAX_DEPTH);
    assert!(
        limited == whole || matches!(limited, Err(ScanError::TooDeep { .. })),
        "{limited:?} vs {whole:?}"
    );

    if let Ok(raws) = serde_json::from_slice::<Vec<&RawValue>>(body) {
        let expected: Vec<Event> = raws
            .iter()
            .map(|raw| {
                let start = (raw.get().as_ptr() as usize - body.as_ptr() as usize) as u64;
                Event::Item {
                    start,
                    end: start + raw.get().len() as u64,
                }
            })
            .collect();
        let events = match whole {
            Ok(events) => events,
            Err(error) => panic!("serde_json accepts the array, the scanner does not: {error}"),
        };
        let items: Vec<Event> = events
            .into_iter()
            .filter(|event| matches!(event, Event::Item { .. }))
            .collect();
        assert_eq!(items, expected);
    }
});
