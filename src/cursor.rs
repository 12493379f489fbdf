//! PLACEHOLDER replaced by the cursor helper.
#![allow(missing_docs, unused_variables)]
use serde_json::value::RawValue;
use std::time::{Duration, SystemTime};
pub const MAX_CURSOR_LEN: usize = 1024;
#[derive(Clone)]
pub struct CursorKey {
    pub id: u8,
    pub secret: Vec<u8>,
}
#[derive(Clone, Debug)]
pub struct CursorCodec;
impl CursorCodec {
    pub fn new(keys: Vec<CursorKey>, ttl: Option<Duration>) -> Option<Self> {
        Some(Self)
    }
    pub fn encode(&self, route: u64, binding: u64, key: &[&RawValue], now: SystemTime) -> String {
        String::new()
    }
    pub fn decode(
        &self,
        cursor: &str,
        route: u64,
        binding: u64,
        arity: usize,
        now: SystemTime,
    ) -> Result<Vec<Box<RawValue>>, CursorError> {
        Err(CursorError::Truncated)
    }
}
pub fn route_id(route_name: &str) -> u64 {
    0
}
pub fn binding_hash<'a>(pairs: impl IntoIterator<Item = &'a str>) -> u64 {
    0
}
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("truncated")]
    Truncated,
}
