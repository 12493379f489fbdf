//! Placeholder until the scanner bench lands.
fn main() {}
