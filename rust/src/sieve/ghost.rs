//! S3-FIFO's ghost queue: the keys recently evicted from the small queue, without values,
//! in FIFO order with a capacity (libCacheSim's `FIFO-ghost`). `src/store/_ghost.ts` is
//! its TypeScript port.

use hashbrown::HashTable;

use super::{NIL, StoredKey};
use crate::hash::hash_bytes;

#[derive(Debug)]
struct GhostNode {
    key: StoredKey,
    hash: u64,
    newer: u32,
    older: u32,
}

/// A FIFO of keys with a capacity; a key is at most once in it.
#[derive(Debug)]
pub(super) struct Ghost {
    capacity: usize,
    table: HashTable<u32>,
    nodes: Vec<GhostNode>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
}

impl Ghost {
    /// An empty ghost of at most `capacity` keys (0: it keeps none).
    pub(super) fn new(capacity: usize) -> Ghost {
        Ghost {
            capacity,
            table: HashTable::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    /// Keys held.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Removes `key`; returns whether it was there.
    pub(super) fn remove(&mut self, state: &ahash::RandomState, key: &[u8]) -> bool {
        let hash = hash_bytes(state, key);
        let nodes = &self.nodes;
        let Ok(entry) = self
            .table
            .find_entry(hash, |&n| nodes[n as usize].key.as_bytes() == key)
        else {
            return false;
        };
        let (node, _) = entry.remove();
        self.unlink(node);
        true
    }

    /// Adds `key` as the newest, dropping the oldest when full; a present key stays where
    /// it is (libCacheSim's ghost counts it as a hit and moves nothing).
    pub(super) fn add(&mut self, state: &ahash::RandomState, key: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        let hash = hash_bytes(state, key);
        let nodes = &self.nodes;
        if self
            .table
            .find(hash, |&n| nodes[n as usize].key.as_bytes() == key)
            .is_some()
        {
            return;
        }
        if self.table.len() >= self.capacity {
            let oldest = self.tail;
            let h = self.nodes[oldest as usize].hash;
            if let Ok(entry) = self.table.find_entry(h, |&n| n == oldest) {
                entry.remove();
            }
            self.unlink(oldest);
        }
        let node = GhostNode {
            key: StoredKey::new(key),
            hash,
            newer: NIL,
            older: self.head,
        };
        let n = match self.free.pop() {
            Some(n) => {
                self.nodes[n as usize] = node;
                n
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        if self.head == NIL {
            self.tail = n;
        } else {
            self.nodes[self.head as usize].newer = n;
        }
        self.head = n;
        let nodes = &self.nodes;
        self.table
            .insert_unique(hash, n, |&m| nodes[m as usize].hash);
    }

    /// Forgets every key.
    pub(super) fn clear(&mut self) {
        self.table = HashTable::new();
        self.nodes = Vec::new();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
    }

    /// Keys from the newest to the oldest (tests).
    #[cfg(test)]
    pub(super) fn order(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut n = self.head;
        while n != NIL {
            out.push(self.nodes[n as usize].key.as_bytes().to_vec());
            n = self.nodes[n as usize].older;
        }
        out
    }

    fn unlink(&mut self, node: u32) {
        let (newer, older) = {
            let g = &self.nodes[node as usize];
            (g.newer, g.older)
        };
        if newer == NIL {
            self.head = older;
        } else {
            self.nodes[newer as usize].older = older;
        }
        if older == NIL {
            self.tail = newer;
        } else {
            self.nodes[older as usize].newer = newer;
        }
        self.nodes[node as usize].key = StoredKey::EMPTY;
        self.free.push(node);
    }
}
