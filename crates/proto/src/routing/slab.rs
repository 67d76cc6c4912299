//! Fixed-size records in chunks, addressed by 4-byte slot numbers.
//!
//! The routing table keeps hundreds of thousands of small records. A `Vec` would
//! double (and copy) as it grows and keep up to half its capacity idle; boxes per
//! record would cost an allocation header each. Chunks of [`CHUNK`] records never
//! move, so the most that sits idle is one partly used chunk, and freed slots are
//! reused before the slab grows.

/// Records per chunk: small enough that a router with a few entries (the
/// simulator runs thousands of them) wastes little, large enough that the chunk
/// list stays short.
const CHUNK: usize = 256;

#[derive(Debug)]
pub(crate) struct Slab<T> {
    chunks: Vec<Box<[T; CHUNK]>>,
    /// Slots handed out so far, freed ones included.
    high: u32,
    free: Vec<u32>,
}

impl<T: Copy + Default> Slab<T> {
    pub(crate) fn new() -> Self {
        Self {
            chunks: Vec::new(),
            high: 0,
            free: Vec::new(),
        }
    }

    /// Stores `value` in a free slot and returns the slot.
    pub(crate) fn alloc(&mut self, value: T) -> u32 {
        if let Some(slot) = self.free.pop() {
            *self.get_mut(slot) = value;
            return slot;
        }
        let slot = self.high;
        if slot as usize == self.chunks.len() * CHUNK {
            self.chunks.push(Box::new([T::default(); CHUNK]));
        }
        self.high += 1;
        *self.get_mut(slot) = value;
        slot
    }

    /// Gives `slot` back. The caller marks the record as unused, if it must tell.
    pub(crate) fn free(&mut self, slot: u32) {
        debug_assert!(slot < self.high);
        self.free.push(slot);
    }

    pub(crate) fn get(&self, slot: u32) -> &T {
        let i = slot as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> &mut T {
        let i = slot as usize;
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }

    /// Every slot ever handed out, freed ones included (`0..high`).
    pub(crate) fn high(&self) -> u32 {
        self.high
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<usize>()
            + self.chunks.len() * std::mem::size_of::<[T; CHUNK]>()
            + self.free.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_slots_come_back_before_growth() {
        let mut s: Slab<u64> = Slab::new();
        let a = s.alloc(1);
        let b = s.alloc(2);
        s.free(a);
        assert_eq!(s.alloc(3), a);
        assert_eq!((*s.get(a), *s.get(b), s.high()), (3, 2, 2));
        for i in 0..CHUNK as u64 {
            s.alloc(i);
        }
        assert_eq!(s.chunks.len(), 2);
    }
}
