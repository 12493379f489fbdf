//! PLACEHOLDER replaced by the scanner helper.
/// Where the list sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemsPath(pub Vec<String>);
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    RootOpen { offset: u64, is_object: bool },
    ItemsOpen { offset: u64 },
    Item { start: u64, end: u64 },
    ItemsClose { offset: u64 },
    RootClose { end: u64 },
}
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[error("placeholder")]
pub struct ScanError;
#[allow(missing_docs)]
pub struct Scanner;
#[allow(missing_docs, unused_variables)]
impl Scanner {
    pub fn new(path: ItemsPath, max_depth: usize) -> Self {
        Self
    }
    pub fn feed(
        &mut self,
        chunk: &[u8],
        on_event: impl FnMut(Event) -> std::ops::ControlFlow<()>,
    ) -> Result<std::ops::ControlFlow<()>, ScanError> {
        Err(ScanError)
    }
    pub fn finish(&mut self) -> Result<(), ScanError> {
        Err(ScanError)
    }
}
