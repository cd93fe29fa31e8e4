//! An in-memory store for unit tests of the journal and the engine's
//! crash-safety state machine: what was appended, kept in a vector, and a
//! lock held by at most one taker.

use std::sync::Mutex;

use super::{Holder, Leased, Line, Loaded, Store, StoreError, Unlocked};

#[derive(Debug, Default)]
pub struct MemoryStore {
    lines: Mutex<Vec<String>>,
    holder: Mutex<Option<Holder>>,
}

impl MemoryStore {
    /// Every line appended so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Store for MemoryStore {
    fn location(&self) -> String {
        "memory".into()
    }

    fn lock_location(&self) -> String {
        "memory lock".into()
    }

    fn load(&self, _writable: bool) -> Result<Loaded, StoreError> {
        let lines = self.lines().into_iter().enumerate();
        let lines = lines.map(|(i, text)| Line { source: "memory".into(), number: i + 1, text }).collect();
        Ok(Loaded { lines, ..Loaded::default() })
    }

    fn append(&self, _seq: u64, line: Vec<u8>) -> Result<(), StoreError> {
        let text = String::from_utf8(line).expect("journal lines are UTF-8");
        self.lines.lock().unwrap().push(text.trim_end().to_owned());
        Ok(())
    }

    fn compact(&self, _seq: u64, _body: Vec<u8>) -> Result<(), StoreError> {
        Ok(())
    }

    fn lease(&self, holder: Holder) -> Result<Leased, StoreError> {
        let mut held = self.holder.lock().unwrap();
        match &*held {
            Some(h) => Ok(Leased::Held(Some(h.clone()))),
            None => {
                *held = Some(holder);
                Ok(Leased::Fresh)
            }
        }
    }

    fn release(&self) {
        self.holder.lock().unwrap().take();
    }

    fn holder(&self) -> Result<Option<Holder>, StoreError> {
        Ok(self.holder.lock().unwrap().clone())
    }

    fn held_help(&self, _holder: Option<&Holder>) -> String {
        "wait".into()
    }

    fn took_over(&self, stale: &Holder) -> String {
        format!("took over from {stale}")
    }

    fn unlock(&self, _confirm: &mut dyn FnMut(&Holder, &str) -> bool) -> Result<Unlocked, StoreError> {
        Ok(self.holder()?.map_or(Unlocked::Free, |h| Unlocked::Held(Some(h))))
    }
}
