//! The deterministic data that `stor` and `prepare` upload and `--verify` checks.
//!
//! Byte `i` of a file depends only on the file's seed and `i` (a splitmix64 stream indexed by
//! word), so any chunk can be generated or checked at any offset without state, and a server
//! that swaps files, drops or repeats a block, or shifts an offset is caught.

/// A file's seed: FNV-1a of its base name, so `retr --verify` can check a file that `stor` or
/// `prepare` uploaded without being told how it was made.
pub fn seed_for(path: &str) -> u64 {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Word `index` of the stream for `seed`.
fn word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the bytes at `offset..offset + buf.len()` of the stream for `seed`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut rest = buf;
    // An unaligned head, byte by byte, so the middle is whole words.
    while !pos.is_multiple_of(8) {
        let Some((first, tail)) = rest.split_first_mut() else {
            return;
        };
        *first = byte_at(seed, pos);
        pos += 1;
        rest = tail;
    }
    let mut chunks = rest.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&word(seed, pos / 8).to_le_bytes());
        pos += 8;
    }
    for b in chunks.into_remainder() {
        *b = byte_at(seed, pos);
        pos += 1;
    }
}

fn byte_at(seed: u64, pos: u64) -> u8 {
    word(seed, pos / 8).to_le_bytes()[(pos % 8) as usize]
}

/// Checks `data` against the stream at `offset`; returns the offset of the first difference.
pub fn check(seed: u64, offset: u64, data: &[u8]) -> Option<u64> {
    let mut expect = [0u8; 4096];
    let mut pos = offset;
    for chunk in data.chunks(expect.len()) {
        let want = &mut expect[..chunk.len()];
        fill(seed, pos, want);
        if want != chunk {
            let i = want.iter().zip(chunk).position(|(a, b)| a != b).unwrap_or(0);
            return Some(pos + i as u64);
        }
        pos += chunk.len() as u64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split_gives_the_same_stream() {
        let mut whole = vec![0u8; 1000];
        fill(7, 3, &mut whole);
        for cut in [0, 1, 5, 8, 13, 999, 1000] {
            let mut a = vec![0u8; cut];
            let mut b = vec![0u8; 1000 - cut];
            fill(7, 3, &mut a);
            fill(7, 3 + cut as u64, &mut b);
            a.extend_from_slice(&b);
            assert_eq!(a, whole, "cut at {cut}");
        }
        assert_eq!(check(7, 3, &whole), None);
        whole[500] ^= 1;
        assert_eq!(check(7, 3, &whole), Some(503));
        assert_ne!(seed_for("dir/a"), seed_for("b"));
        assert_eq!(seed_for("dir/a"), seed_for("a"));
    }
}
