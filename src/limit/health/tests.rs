//! A store's health reports only its changes of state.

use super::Health;

#[test]
fn only_a_change_of_state_is_reported() {
    let health = Health::default();
    assert!(!health.changed(false), "healthy from the start");
    assert!(health.changed(true), "an incident starts");
    assert!(!health.changed(true), "and goes on");
    assert!(health.changed(false), "it ends");
    assert!(!health.changed(false));
}
