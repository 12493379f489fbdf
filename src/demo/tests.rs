use super::*;

#[test]
fn timestamps_are_rfc3339() {
    assert_eq!(timestamp(1_767_225_600), "2026-01-01T00:00:00Z");
    assert_eq!(
        timestamp(1_767_225_600 + 3 * 1_000_000),
        "2026-02-04T17:20:00Z"
    );
    assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
}
