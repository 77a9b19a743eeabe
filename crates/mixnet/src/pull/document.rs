//! How a client puts a directory document back together from the chunks that ride in the pull
//! answers ([`DocAssembler`]), in order and under a length bound.

use crate::client_proto::Want;

/// Why a chunk was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// The chunk is for another epoch than the one being assembled.
    #[error("a chunk of another epoch")]
    Epoch,
    /// Out of order, or its count differs from the earlier chunks'.
    #[error("a chunk out of order")]
    Order,
    /// The document would be longer than allowed.
    #[error("the document is too long")]
    TooLong,
}

/// Puts one epoch's document together from its chunks, in order, under a length bound.
#[derive(Debug, Clone)]
pub struct DocAssembler {
    epoch: u64,
    count: u16,
    next: u16,
    bytes: Vec<u8>,
    max_len: usize,
}

impl DocAssembler {
    /// Assembles the document of `epoch`, at most `max_len` bytes.
    pub fn new(epoch: u64, max_len: usize) -> Self {
        Self { epoch, count: 0, next: 0, bytes: Vec::new(), max_len }
    }

    /// The epoch being assembled.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// What to ask for next.
    pub fn want(&self) -> Want {
        Want { epoch: self.epoch, from: self.next }
    }

    /// Adds a chunk; the document's bytes once the last chunk arrived. A chunk already held is
    /// ignored (`Ok(None)`).
    pub fn push(
        &mut self,
        epoch: u64,
        index: u16,
        count: u16,
        chunk: &[u8],
    ) -> Result<Option<Vec<u8>>, ChunkError> {
        if epoch != self.epoch {
            return Err(ChunkError::Epoch);
        }
        if index < self.next {
            return Ok(None);
        }
        if index != self.next || (self.next > 0 && count != self.count) || index >= count {
            return Err(ChunkError::Order);
        }
        if self.bytes.len() + chunk.len() > self.max_len {
            self.reset();
            return Err(ChunkError::TooLong);
        }
        self.count = count;
        self.bytes.extend_from_slice(chunk);
        self.next += 1;
        if self.next == self.count {
            let doc = std::mem::take(&mut self.bytes);
            self.reset();
            return Ok(Some(doc));
        }
        Ok(None)
    }

    /// Starts over (after a document that did not verify, for instance).
    pub fn reset(&mut self) {
        self.count = 0;
        self.next = 0;
        self.bytes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_proto::{OpResult, PULL_OPS, Response};
    use crate::pull::PullServer;

    #[test]
    fn a_document_comes_back_whole_in_order() {
        let doc: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let mut s = PullServer::new(4);
        let mut asm = DocAssembler::new(3, 10_000);
        let mut got = None;
        for _ in 0..5 {
            for r in
                s.answer(1, 2, false, [OpResult::Done; PULL_OPS], vec![], asm.want(), Some(&doc), 1000, 0)
            {
                if let Response::DocChunk { epoch, index, count, bytes, .. } = r
                    && let Some(d) = asm.push(epoch, index, count, &bytes).unwrap()
                {
                    got = Some(d);
                }
            }
            if got.is_some() {
                break;
            }
        }
        assert_eq!(got, Some(doc));
    }

    #[test]
    fn the_assembler_refuses_what_does_not_fit() {
        let mut a = DocAssembler::new(3, 1500);
        assert_eq!(a.push(4, 0, 2, &[0; 10]), Err(ChunkError::Epoch));
        assert_eq!(a.push(3, 1, 2, &[0; 10]), Err(ChunkError::Order));
        assert_eq!(a.push(3, 0, 0, &[0; 10]), Err(ChunkError::Order));
        assert_eq!(a.push(3, 0, 2, &[0; 1000]), Ok(None));
        assert_eq!(a.push(3, 0, 2, &[0; 1000]), Ok(None), "a repeat is ignored");
        assert_eq!(a.push(3, 1, 3, &[0; 10]), Err(ChunkError::Order));
        assert_eq!(a.push(3, 1, 2, &[0; 1000]), Err(ChunkError::TooLong));
        assert_eq!(a.want(), Want { epoch: 3, from: 0 });
    }
}
