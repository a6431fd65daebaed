//! Doubly linked lists over slot numbers, for the policies made of several queues
//! (S3-FIFO, W-TinyLFU): each list runs from its newest entry (head) to its oldest (tail),
//! and a slot is on one list at a time. `src/store/_multi_queue.ts` is its TypeScript port.

use super::NIL;

/// Up to three lists over slot numbers.
#[derive(Debug)]
pub(super) struct SlotLists {
    /// Towards the head (newer entry), or NIL; by slot.
    newer: Vec<u32>,
    /// Towards the tail (older entry), or NIL; by slot.
    older: Vec<u32>,
    /// The list each linked slot is on; by slot.
    list_of: Vec<u8>,
    head: [u32; 3],
    tail: [u32; 3],
    len: [usize; 3],
    lists: usize,
}

impl SlotLists {
    /// `lists` empty lists (1 to 3).
    pub(super) fn new(lists: usize) -> SlotLists {
        debug_assert!((1..=3).contains(&lists));
        SlotLists {
            newer: Vec::new(),
            older: Vec::new(),
            list_of: Vec::new(),
            head: [NIL; 3],
            tail: [NIL; 3],
            len: [0; 3],
            lists,
        }
    }

    /// Empties every list and forgets the slots.
    pub(super) fn clear(&mut self) {
        self.newer.clear();
        self.older.clear();
        self.list_of.clear();
        self.head = [NIL; 3];
        self.tail = [NIL; 3];
        self.len = [0; 3];
    }

    #[inline]
    pub(super) fn tail(&self, list: usize) -> u32 {
        self.tail[list]
    }

    #[inline]
    pub(super) fn len(&self, list: usize) -> usize {
        self.len[list]
    }

    /// The list the linked `slot` is on.
    #[inline]
    pub(super) fn list_of(&self, slot: u32) -> usize {
        self.list_of[slot as usize] as usize
    }

    /// Links the unlinked `slot` at the head of `list`.
    pub(super) fn push_head(&mut self, list: usize, slot: u32) {
        let i = slot as usize;
        if i >= self.newer.len() {
            self.newer.resize(i + 1, NIL);
            self.older.resize(i + 1, NIL);
            self.list_of.resize(i + 1, 0);
        }
        let old = self.head[list];
        self.newer[i] = NIL;
        self.older[i] = old;
        if old == NIL {
            self.tail[list] = slot;
        } else {
            self.newer[old as usize] = slot;
        }
        self.head[list] = slot;
        self.list_of[i] = list as u8;
        self.len[list] += 1;
    }

    /// Takes the linked `slot` off its list.
    pub(super) fn unlink(&mut self, slot: u32) {
        let i = slot as usize;
        let list = self.list_of[i] as usize;
        let (newer, older) = (self.newer[i], self.older[i]);
        if newer == NIL {
            self.head[list] = older;
        } else {
            self.older[newer as usize] = older;
        }
        if older == NIL {
            self.tail[list] = newer;
        } else {
            self.newer[older as usize] = newer;
        }
        self.len[list] -= 1;
    }

    /// Moves the linked `slot` to the head of `list` (its own or another).
    pub(super) fn move_to_head(&mut self, list: usize, slot: u32) {
        if self.head[list] == slot {
            return;
        }
        self.unlink(slot);
        self.push_head(list, slot);
    }

    /// The slots of `list`, head (newest) first.
    pub(super) fn order(&self, list: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len[list]);
        let mut s = self.head[list];
        while s != NIL {
            out.push(s);
            s = self.older[s as usize];
        }
        out
    }

    /// Checks that each list links both ways, has its length and holds only slots marked
    /// as its own; returns every linked slot. Panics on the first violation.
    pub(super) fn validate(&self) -> Vec<u32> {
        let mut all = Vec::new();
        let mut seen = vec![false; self.newer.len()];
        for list in 0..self.lists {
            let mut prev = NIL;
            let mut n = 0usize;
            let mut s = self.head[list];
            while s != NIL {
                let i = s as usize;
                assert!(!seen[i], "slot {s} linked twice");
                seen[i] = true;
                assert_eq!(self.newer[i], prev, "broken newer link at slot {s}");
                assert_eq!(
                    self.list_of[i] as usize, list,
                    "slot {s} marked on another list"
                );
                prev = s;
                n += 1;
                assert!(n <= self.len[list], "list {list} longer than its length");
                all.push(s);
                s = self.older[i];
            }
            assert_eq!(
                self.tail[list], prev,
                "list {list}: tail is not the last entry"
            );
            assert_eq!(n, self.len[list], "list {list} length");
        }
        all
    }
}
