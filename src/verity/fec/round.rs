//! Decoding one round: the k covered blocks that share codewords (block j of the round is
//! symbol j of each of its block-size codewords) and their parity. The round's blocks are read
//! once and all its codewords decoded together, as the kernel decodes one RS block at a time.

use super::encode::read_covered;
use super::layout::FecLayout;
use super::rs::Code;
use super::FecIoError;
use crate::verity::BlockSource;

/// The result of decoding one round.
#[derive(Debug, Clone)]
pub struct RoundDecode {
    /// The k message blocks after correction, one after another.
    pub blocks: Vec<u8>,
    /// Bytes changed in each of the k blocks.
    pub changed: Vec<usize>,
    /// Codewords (byte positions within a block) that could not be decoded.
    pub failed: Vec<usize>,
}

/// Decodes round `round`. `erasures` are symbol positions (0 .. k) suspected bad; when given, each
/// codeword is decoded with them first and without them only if that fails.
pub fn decode_round<D, H, F>(
    layout: &FecLayout,
    data: &D,
    hash: &H,
    fec: &F,
    round: u64,
    erasures: &[usize],
) -> Result<RoundDecode, FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
    F: BlockSource + ?Sized,
{
    let code = Code::new(layout.roots).expect("roots checked by FecLayout");
    let bs = layout.block_size as usize;
    let k = code.k();
    let r = code.roots();
    // Row j of the codewords is covered block j of the round: k whole-block reads, in the
    // layout the encoder takes.
    let mut blocks = vec![0u8; k * bs];
    for j in 0..k {
        let x = layout.block_at(round, j as u64);
        read_covered(layout, data, hash, x, 1, &mut blocks[j * bs..(j + 1) * bs])?;
    }
    let mut parity = vec![0u8; bs * r];
    let poff = layout.parity_offset(round);
    fec.read_at(&mut parity, poff)
        .map_err(|source| FecIoError::Read {
            what: "FEC device",
            offset: poff,
            source,
        })?;
    let mut eras: Vec<usize> = erasures.iter().copied().filter(|&j| j < k).collect();
    eras.sort_unstable();
    eras.dedup();
    eras.truncate(r);
    // Re-encoding the message rows (the fast encoder, all codewords at once) and XORing the
    // stored parity gives each codeword's remainder: zero for an intact codeword, else its
    // syndromes, so no codeword has to be gathered from the k rows.
    let mut rem = vec![0u8; bs * r];
    code.encode_rows(&blocks, bs, &mut rem);
    let mut changed = vec![0usize; k];
    let mut failed = Vec::new();
    for (b, (diff, stored)) in rem
        .chunks_exact_mut(r)
        .zip(parity.chunks_exact(r))
        .enumerate()
    {
        if diff == stored {
            continue;
        }
        for (d, p) in diff.iter_mut().zip(stored) {
            *d ^= p;
        }
        let s = code.remainder_syndromes(diff);
        // With known-bad symbols, erasure decoding is tried first: plain decoding past its
        // capacity tends to "succeed" with a wrong codeword rather than fail.
        let fix = (!eras.is_empty())
            .then(|| code.solve(&s, &eras).ok())
            .flatten()
            .or_else(|| code.solve(&s, &[]).ok());
        let Some(fix) = fix else {
            failed.push(b);
            continue;
        };
        // Parity symbols (p >= k) are not part of any block.
        for (p, v) in fix.iter().filter(|&(p, _)| p < k) {
            blocks[p * bs + b] ^= v;
            changed[p] += 1;
        }
    }
    Ok(RoundDecode {
        blocks,
        changed,
        failed,
    })
}

/// Decodes covered block `x` (a data block index, or `data_blocks + i` for the i-th covered hash
/// block). With `bad` empty it decodes without erasure information; otherwise `x` and the blocks in
/// `bad` (other covered blocks known to be bad) are erasures. Returns the corrected block and the
/// number of bytes changed, or `None` when some codeword of the block cannot be decoded. The
/// result is NOT checked against the tree: hash it before trusting it, and if it does not match,
/// call again with the known bad blocks (the kernel's order: plain first, then erasures).
pub fn decode_block<D, H, F>(
    layout: &FecLayout,
    data: &D,
    hash: &H,
    fec: &F,
    x: u64,
    bad: &[u64],
) -> Result<Option<(Vec<u8>, usize)>, FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
    F: BlockSource + ?Sized,
{
    let (round, j) = layout.position_of(x);
    let eras = if bad.is_empty() {
        Vec::new()
    } else {
        erasures_for(layout, round, j, bad.iter().copied())
    };
    let d = decode_round(layout, data, hash, fec, round, &eras)?;
    if !d.failed.is_empty() {
        return Ok(None);
    }
    let bs = layout.block_size as usize;
    Ok(Some((
        d.blocks[j * bs..(j + 1) * bs].to_vec(),
        d.changed[j],
    )))
}

/// Symbol positions of round `round` to treat as erasures: the target first, then other bad
/// blocks of the same round.
fn erasures_for(
    layout: &FecLayout,
    round: u64,
    target: usize,
    bad: impl Iterator<Item = u64>,
) -> Vec<usize> {
    let mut e = vec![target];
    for x in bad {
        let (n, j) = layout.position_of(x);
        if n == round && j != target && x < layout.covered_blocks() {
            e.push(j);
        }
    }
    e
}
