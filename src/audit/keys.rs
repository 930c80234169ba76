//! A shadow's per-key figures, each in a *slot*: a dense index (0, 1, 2 ... in the order keys
//! came) into one vector, beside a map from key to slot. The counter's hot path names a key by
//! its state backend's key id ([`crate::state::KeyIds`]); the auditor translates that id to a slot
//! once per key and attempt ([`SlotsOf`]), so applying a record costs two vector lookups instead of
//! a second hash lookup of the key (issue 24: ~28% of an audited run was that lookup).
//!
//! Keys are never removed, so a slot keeps its key for the life of the table; a new table (a
//! deploy puts a checkpoint's shadow back) has slots of its own, and the translations are dropped
//! with the old one. Written (the auditor's record) as a map from key to figures, as before.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::de::Deserializer;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::KeyShadow;
use crate::state::KeyIds;

/// A slot: where a key's figures are in its [`KeyShadows`].
pub type Slot = u32;

/// Per key, what a subtask's state reflects, by slot and by key.
#[derive(Debug, Clone, Default)]
pub struct KeyShadows {
    slots: FxHashMap<Arc<str>, Slot>,
    figures: Vec<(Arc<str>, KeyShadow)>,
}

impl KeyShadows {
    pub fn len(&self) -> usize {
        self.figures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.figures.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&KeyShadow> {
        self.slots.get(key).map(|&s| &self.figures[s as usize].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut KeyShadow> {
        self.slots.get(key).map(|&s| &mut self.figures[s as usize].1)
    }

    /// The key's slot, given one (empty figures) if it has none yet.
    pub fn slot_of(&mut self, key: &str) -> Slot {
        if let Some(&s) = self.slots.get(key) {
            return s;
        }
        self.add(Arc::from(key))
    }

    /// The key's slot, given one if it has none yet (the key's `Arc` is shared, not copied).
    pub fn slot_of_arc(&mut self, key: &Arc<str>) -> Slot {
        if let Some(&s) = self.slots.get(&**key) {
            return s;
        }
        self.add(key.clone())
    }

    fn add(&mut self, key: Arc<str>) -> Slot {
        let s = Slot::try_from(self.figures.len()).expect("fewer than 2^32 keys per subtask");
        self.slots.insert(key.clone(), s);
        self.figures.push((key, KeyShadow::default()));
        s
    }

    /// The key's figures, empty ones if it had none.
    pub fn entry(&mut self, key: &str) -> &mut KeyShadow {
        let s = self.slot_of(key);
        &mut self.figures[s as usize].1
    }

    /// The figures in `slot` (a slot this table gave).
    #[inline]
    pub fn at_mut(&mut self, slot: Slot) -> &mut KeyShadow {
        &mut self.figures[slot as usize].1
    }

    /// The key in `slot` and its figures.
    pub fn slot_mut(&mut self, slot: Slot) -> (&Arc<str>, &mut KeyShadow) {
        let (k, ks) = &mut self.figures[slot as usize];
        (k, ks)
    }

    pub fn insert(&mut self, key: Arc<str>, ks: KeyShadow) {
        let s = self.slot_of_arc(&key);
        self.figures[s as usize].1 = ks;
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &KeyShadow)> + '_ {
        self.figures.iter().map(|(k, ks)| (k, ks))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Arc<str>, &mut KeyShadow)> + '_ {
        self.figures.iter_mut().map(|(k, ks)| (&*k, ks))
    }

    pub fn values(&self) -> impl Iterator<Item = &KeyShadow> + '_ {
        self.figures.iter().map(|(_, ks)| ks)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut KeyShadow> + '_ {
        self.figures.iter_mut().map(|(_, ks)| ks)
    }
}

impl Serialize for KeyShadows {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(self.figures.len()))?;
        for (k, ks) in &self.figures {
            m.serialize_entry(&**k, ks)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for KeyShadows {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let m = FxHashMap::<Arc<str>, KeyShadow>::deserialize(deserializer)?;
        let mut keys = KeyShadows::default();
        for (k, ks) in m {
            keys.insert(k, ks);
        }
        Ok(keys)
    }
}

/// A marker in [`SlotsOf`]: this key id has no slot yet.
const NO_SLOT: Slot = Slot::MAX;

/// Which slot of a subtask's [`KeyShadows`] each key id of its state backend's current id space
/// names: learnt per key id on its first record (one hash lookup of the key), then a vector
/// lookup. Forgotten when the backend's id space changes (a new attempt's backend, a restore)
/// and when the shadow is replaced (its slots are others).
#[derive(Debug, Default)]
pub struct SlotsOf {
    space: Option<u64>,
    slots: Vec<Slot>,
}

impl SlotsOf {
    /// Forgets every translation (the shadow's slots changed meaning).
    pub fn forget(&mut self) {
        self.space = None;
        self.slots.clear();
    }

    /// Readies the translation for a batch named in `ids`' space.
    #[inline]
    pub fn enter(&mut self, ids: &KeyIds) {
        if self.space != Some(ids.space()) {
            self.space = Some(ids.space());
            self.slots.clear();
        }
    }

    /// The slot of key id `id` of `ids` (after [`SlotsOf::enter`] with the same `ids`).
    #[inline]
    pub fn slot(&mut self, id: u32, ids: &KeyIds, keys: &mut KeyShadows) -> Slot {
        match self.slots.get(id as usize) {
            Some(&s) if s != NO_SLOT => s,
            _ => self.learn(id, ids, keys),
        }
    }

    #[cold]
    fn learn(&mut self, id: u32, ids: &KeyIds, keys: &mut KeyShadows) -> Slot {
        let s = keys.slot_of_arc(ids.key(id));
        let i = id as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, NO_SLOT);
        }
        self.slots[i] = s;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Catches a translation kept across id spaces (a restored backend numbers its keys anew: an
    // old translation would put one key's record on another key) and a slot given twice.
    #[test]
    fn a_key_id_names_its_own_key_in_every_id_space() {
        let mut keys = KeyShadows::default();
        let mut slots = SlotsOf::default();
        let mut ids = KeyIds::default();
        let (a, b) = (ids.push(Arc::from("a")), ids.push(Arc::from("b")));
        slots.enter(&ids);
        let sa = slots.slot(a, &ids, &mut keys);
        keys.at_mut(sa).applies += 1;
        let sb = slots.slot(b, &ids, &mut keys);
        keys.at_mut(sb).applies += 10;
        assert_eq!(slots.slot(a, &ids, &mut keys), sa, "learnt once");
        // A new space where id 0 is "b".
        ids.clear();
        let b2 = ids.push(Arc::from("b"));
        slots.enter(&ids);
        let s = slots.slot(b2, &ids, &mut keys);
        keys.at_mut(s).applies += 100;
        assert_eq!((keys.get("a").map(|k| k.applies), keys.get("b").map(|k| k.applies)), (Some(1), Some(110)));
        assert_eq!(keys.len(), 2);
    }
}
