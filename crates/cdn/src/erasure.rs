//! The blocks' erasure code and padding: Reed-Solomon over GF(2^8) (reduction
//! polynomial 0x11D, the systematic Vandermonde construction of Backblaze and
//! klauspost that uploaders use), `k` data shards and `n − k` parity shards.
//!
//! Unlike upstream, which needs every shard, any `k` shards of equal length give
//! the block back. Padding is checked: the last byte `p` says how many bytes were
//! appended, `1 ≤ p ≤ k`, and every appended byte must be `p`.

use reed_solomon_erasure::galois_8::ReedSolomon;

/// Why a block's shards do not give its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErasureError {
    /// `k` is 0, `k ≥ n` (no parity: the code needs at least one parity shard,
    /// as upstream's) or `n` exceeds 256.
    #[error("no erasure code has {k} data shards out of {n}")]
    BadShape {
        /// Data shards.
        k: usize,
        /// All shards.
        n: usize,
    },
    /// Fewer than `k` usable shards.
    #[error("{have} usable shards, {k} needed")]
    TooFewShards {
        /// Usable shards.
        have: usize,
        /// Needed.
        k: usize,
    },
    /// The padding is not `p` bytes of value `p` with `1 ≤ p ≤ k`.
    #[error("bad padding")]
    BadPadding,
}

/// The code for `k` data shards out of `n`.
fn codec(k: usize, n: usize) -> Result<ReedSolomon, ErasureError> {
    if k == 0 || k >= n || n > crate::meta::MAX_SHARDS {
        return Err(ErasureError::BadShape { k, n });
    }
    ReedSolomon::new(k, n - k).map_err(|_| ErasureError::BadShape { k, n })
}

/// Checks the shape of a block's code without building it.
pub fn check_shape(k: usize, n: usize) -> Result<(), ErasureError> {
    if k == 0 || k >= n || n > crate::meta::MAX_SHARDS {
        return Err(ErasureError::BadShape { k, n });
    }
    Ok(())
}

/// The data shards' bytes, in order, from any `k` of the `n` shards (`None` for
/// a missing one). Present shards must all have the same, non-zero length.
pub fn reconstruct(k: usize, mut shards: Vec<Option<Vec<u8>>>) -> Result<Vec<u8>, ErasureError> {
    let n = shards.len();
    let rs = codec(k, n)?;
    let have = shards.iter().filter(|s| s.is_some()).count();
    if have < k {
        return Err(ErasureError::TooFewShards { have, k });
    }
    rs.reconstruct_data(&mut shards)
        .map_err(|_| ErasureError::TooFewShards { have, k })?;
    let mut data = Vec::new();
    for shard in shards.into_iter().take(k) {
        data.extend(shard.ok_or(ErasureError::TooFewShards { have, k })?);
    }
    Ok(data)
}

/// `data` padded to a multiple of `k`, cut into `k` data shards, with `n − k`
/// parity shards after them: what an uploader stores.
pub fn encode(k: usize, n: usize, data: &[u8]) -> Result<Vec<Vec<u8>>, ErasureError> {
    let rs = codec(k, n)?;
    let p = u8::try_from(k - data.len() % k).map_err(|_| ErasureError::BadShape { k, n })?;
    let mut padded = data.to_vec();
    padded.resize(data.len() + usize::from(p), p);
    let len = padded.len() / k;
    let mut shards: Vec<Vec<u8>> = padded.chunks(len).map(<[u8]>::to_vec).collect();
    shards.resize(n, vec![0; len]);
    rs.encode(&mut shards)
        .map_err(|_| ErasureError::BadShape { k, n })?;
    Ok(shards)
}

/// `data` without its padding (see the module docs).
pub fn unpad(k: usize, data: &[u8]) -> Result<&[u8], ErasureError> {
    let p = usize::from(*data.last().ok_or(ErasureError::BadPadding)?);
    if p == 0 || p > k || p > data.len() {
        return Err(ErasureError::BadPadding);
    }
    let (body, pad) = data.split_at(data.len() - p);
    if pad.iter().any(|&b| usize::from(b) != p) {
        return Err(ErasureError::BadPadding);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn the_hello_world_block_gives_the_recorded_shards() {
        let c = unhex("fb3e817a328dcf7dd2782f7c5f9e02e2c11376955e780199410bb9");
        let shards = encode(2, 3, &c).unwrap();
        assert_eq!(shards[0], unhex("fb3e817a328dcf7dd2782f7c5f9e"));
        assert_eq!(shards[1], unhex("02e2c11376955e780199410bb901"));
        assert_eq!(shards[2], unhex("149b01a8babdf07769a7f3928ebd"));
    }

    #[test]
    fn any_two_of_three_shards_give_the_block_back() {
        let c = unhex("fb3e817a328dcf7dd2782f7c5f9e02e2c11376955e780199410bb9");
        let shards = encode(2, 3, &c).unwrap();
        for missing in 0..3 {
            let mut some: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
            some[missing] = None;
            let data = reconstruct(2, some).unwrap();
            assert_eq!(unpad(2, &data).unwrap(), &c[..], "without shard {missing}");
        }
    }

    #[test]
    fn the_second_parity_row_matches_the_construction() {
        // k = 3, n = 5: parity rows [1, 1, 1] and [15, 8, 6].
        let data = [1u8, 0, 0, 0, 1, 0, 0, 0, 1];
        let shards = encode(3, 5, &data[..8]).unwrap();
        // Data shards are [1,0,0] [0,1,0] [0,0,1] (padding byte 1 ends the last).
        assert_eq!(shards[3], vec![1, 1, 1]);
        assert_eq!(shards[4], vec![15, 8, 6]);
    }

    #[test]
    fn one_shard_too_few_is_refused() {
        let shards = encode(2, 3, b"abcdef").unwrap();
        let some = vec![Some(shards[0].clone()), None, None];
        assert_eq!(
            reconstruct(2, some),
            Err(ErasureError::TooFewShards { have: 1, k: 2 })
        );
    }

    #[test]
    fn impossible_shapes_are_refused_not_panicking() {
        for (k, n) in [(0, 3), (3, 3), (4, 3), (2, 257)] {
            let shards = vec![Some(vec![1u8; 4]); n];
            assert_eq!(
                reconstruct(k, shards),
                Err(ErasureError::BadShape { k, n }),
                "k={k} n={n}"
            );
        }
    }

    #[test]
    fn shards_of_unequal_length_are_refused() {
        let shards = vec![Some(vec![1u8; 4]), Some(vec![1u8; 5]), None];
        assert!(reconstruct(2, shards).is_err());
    }

    #[test]
    fn padding_is_checked() {
        assert_eq!(unpad(2, &[9, 9, 1]).unwrap(), &[9, 9]);
        assert_eq!(unpad(3, &[9, 3, 3, 3]).unwrap(), &[9]);
        assert_eq!(unpad(2, &[9, 0]), Err(ErasureError::BadPadding));
        assert_eq!(unpad(2, &[9, 3]), Err(ErasureError::BadPadding), "p > k");
        assert_eq!(unpad(9, &[9, 3]), Err(ErasureError::BadPadding), "p > len");
        assert_eq!(unpad(3, &[9, 2, 3, 3]), Err(ErasureError::BadPadding));
        assert_eq!(unpad(3, &[]), Err(ErasureError::BadPadding));
    }
}
