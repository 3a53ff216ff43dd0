//! The PCR values that travel beside a quote (pure core), in the "serialized" form of tpm2-tools'
//! `tpm2_quote -o` that Keylime's verifier and `tpm2_checkquote -f` read: the in-memory
//! little-endian TPML_PCR_SELECTION (u32 count, 16 entries of 8 bytes: u16 hash, u8 sizeofSelect,
//! 4 select bytes, 1 pad), a u32 count n, then n TPML_DIGEST (u32 count, 8 entries of u16 size +
//! 64 bytes). One bank of up to 8 PCRs is 668 bytes.
//!
//! The values are untrusted until their hash matches the quote's signed `pcrDigest`
//! ([`PcrValues::digest`]).

use super::quote::{select_bits, BankSelection};
use super::wire::{alg_of_hash, hash_of_alg, WireError};
use crate::digest::HashAlg;

/// PCR values in selection order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrValues {
    /// The selection, as in the quote.
    pub selection: Vec<BankSelection>,
    /// (bank, PCR, value), bank by bank in selection order, PCRs ascending.
    pub values: Vec<(HashAlg, u32, Vec<u8>)>,
}

const SELECTION_ENTRIES: usize = 16;
const SELECTION_ENTRY: usize = 8;
const DIGESTS_PER_LIST: usize = 8;
const DIGEST_SLOT: usize = 2 + 64;
const LIST_SIZE: usize = 4 + DIGESTS_PER_LIST * DIGEST_SLOT;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl PcrValues {
    /// Parses the serialized form, strictly: every selected PCR has exactly one value of its
    /// bank's size, unused slots are empty, nothing trails.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        let err = |offset: usize, what: String| WireError {
            structure: "PCR values (tpm2-tools serialized)",
            offset,
            what,
        };
        let head = 4 + SELECTION_ENTRIES * SELECTION_ENTRY + 4;
        if b.len() < head {
            return Err(err(
                b.len(),
                format!("{} bytes, shorter than the {head}-byte header", b.len()),
            ));
        }
        let count = le32(b, 0) as usize;
        if count > SELECTION_ENTRIES {
            return Err(err(0, format!("{count} banks selected; at most 16 fit")));
        }
        let mut selection: Vec<BankSelection> = Vec::new();
        for i in 0..count {
            let at = 4 + i * SELECTION_ENTRY;
            let h = le16(b, at);
            let bank = hash_of_alg(h)
                .ok_or_else(|| err(at, format!("PCR bank {h:#06x} is not a known hash")))?;
            let n = b[at + 2] as usize;
            if n > 4 {
                return Err(err(at + 2, format!("sizeofSelect {n} is over 4")));
            }
            let pcrs = select_bits(&b[at + 3..at + 3 + n]);
            if let Some(p) = pcrs.iter().find(|&&p| p >= crate::measure::pcr::PCR_COUNT) {
                return Err(err(at, format!("PCR {p} is selected but PCRs are 0-23")));
            }
            if selection.iter().any(|s| s.bank == bank) {
                return Err(err(at, format!("the {bank} bank is selected twice")));
            }
            selection.push(BankSelection { bank, pcrs });
        }
        let lists = le32(b, head - 4) as usize;
        let want = head.saturating_add(lists.saturating_mul(LIST_SIZE));
        if want != b.len() {
            return Err(err(
                head - 4,
                format!(
                    "{lists} digest lists need {want} bytes in all, the file has {}",
                    b.len()
                ),
            ));
        }
        let mut digests: Vec<(usize, &[u8])> = Vec::new();
        for l in 0..lists {
            let at = head + l * LIST_SIZE;
            let n = le32(b, at) as usize;
            if n > DIGESTS_PER_LIST {
                return Err(err(at, format!("a digest list claims {n} entries; 8 fit")));
            }
            for k in 0..DIGESTS_PER_LIST {
                let slot = at + 4 + k * DIGEST_SLOT;
                let size = le16(b, slot) as usize;
                if size > 64 {
                    return Err(err(slot, format!("a digest claims {size} bytes; 64 fit")));
                }
                if k >= n {
                    if size != 0 {
                        return Err(err(slot, "an unused digest slot is not empty".into()));
                    }
                    continue;
                }
                digests.push((slot, &b[slot + 2..slot + 2 + size]));
            }
        }
        let mut values = Vec::new();
        let mut it = digests.into_iter();
        for s in &selection {
            for &p in &s.pcrs {
                let (slot, d) = it.next().ok_or_else(|| {
                    err(
                        b.len(),
                        format!("no value for PCR {p} ({}), which is selected", s.bank),
                    )
                })?;
                if d.len() != s.bank.digest_size() {
                    return Err(err(
                        slot,
                        format!(
                            "PCR {p} ({}) value is {} bytes, the bank's are {}",
                            s.bank,
                            d.len(),
                            s.bank.digest_size()
                        ),
                    ));
                }
                values.push((s.bank, p, d.to_vec()));
            }
        }
        if let Some((slot, _)) = it.next() {
            return Err(err(slot, "more values than selected PCRs".into()));
        }
        Ok(Self { selection, values })
    }

    /// Serializes `values` (bank by bank in the given order, PCRs ascending within a bank).
    pub fn build(values: &[(HashAlg, u32, Vec<u8>)]) -> Vec<u8> {
        let mut banks: Vec<HashAlg> = Vec::new();
        for (b, _, _) in values {
            if !banks.contains(b) {
                banks.push(*b);
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(banks.len() as u32).to_le_bytes());
        let mut ordered: Vec<&(HashAlg, u32, Vec<u8>)> = Vec::new();
        for i in 0..SELECTION_ENTRIES {
            let mut e = [0u8; SELECTION_ENTRY];
            if let Some(&bank) = banks.get(i) {
                e[..2].copy_from_slice(&alg_of_hash(bank).to_le_bytes());
                e[2] = 3;
                let mut mine: Vec<_> = values.iter().filter(|v| v.0 == bank).collect();
                mine.sort_by_key(|v| v.1);
                for v in &mine {
                    e[3 + v.1 as usize / 8] |= 1 << (v.1 % 8);
                }
                ordered.extend(mine);
            }
            out.extend_from_slice(&e);
        }
        let chunks: Vec<_> = ordered.chunks(DIGESTS_PER_LIST).collect();
        out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        for c in chunks {
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            for k in 0..DIGESTS_PER_LIST {
                let mut slot = [0u8; DIGEST_SLOT];
                if let Some(v) = c.get(k) {
                    slot[..2].copy_from_slice(&(v.2.len() as u16).to_le_bytes());
                    slot[2..2 + v.2.len()].copy_from_slice(&v.2);
                }
                out.extend_from_slice(&slot);
            }
        }
        out
    }

    /// H(every value concatenated in selection order): what TPM2_Quote puts in `pcrDigest`.
    pub fn digest(&self, hash: HashAlg) -> Vec<u8> {
        let mut h = hash.hasher();
        for (_, _, v) in &self.values {
            h.update(v);
        }
        h.finish_vec()
    }

    /// The value of `pcr` in `bank`, if quoted.
    pub fn get(&self, bank: HashAlg, pcr: u32) -> Option<&[u8]> {
        self.values
            .iter()
            .find(|v| v.0 == bank && v.1 == pcr)
            .map(|v| v.2.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Vec<(HashAlg, u32, Vec<u8>)> {
        vec![
            (HashAlg::Sha256, 12, vec![0x12; 32]),
            (HashAlg::Sha256, 13, vec![0x13; 32]),
            (HashAlg::Sha256, 15, vec![0x15; 32]),
        ]
    }

    #[test]
    fn one_bank_is_668_bytes_and_round_trips() {
        let b = PcrValues::build(&three());
        assert_eq!(b.len(), 668);
        let p = PcrValues::parse(&b).unwrap();
        assert_eq!(p.values, three());
        assert_eq!(p.selection[0].pcrs, vec![12, 13, 15]);
        assert_eq!(p.get(HashAlg::Sha256, 13), Some(&[0x13; 32][..]));
        let cat = [[0x12u8; 32], [0x13; 32], [0x15; 32]].concat();
        assert_eq!(p.digest(HashAlg::Sha256), HashAlg::Sha256.digest(&cat));
    }

    #[test]
    fn more_than_eight_values_span_lists() {
        let v: Vec<_> = (0..10u32)
            .map(|p| (HashAlg::Sha1, p, vec![p as u8; 20]))
            .chain([(HashAlg::Sha256, 23, vec![1; 32])])
            .collect();
        let b = PcrValues::build(&v);
        assert_eq!(b.len(), 136 + 2 * 532);
        assert_eq!(PcrValues::parse(&b).unwrap().values, v);
    }

    #[test]
    fn refuses_inconsistent_blobs() {
        let b = PcrValues::build(&three());
        for n in [0, 10, 136, 667] {
            assert!(PcrValues::parse(&b[..n]).is_err(), "prefix {n}");
        }
        // A value of the wrong size for its bank.
        let mut w = b.clone();
        w[140] = 20;
        assert!(PcrValues::parse(&w)
            .unwrap_err()
            .to_string()
            .contains("value is 20 bytes"));
        // A fourth value with only three selected.
        let mut x = b.clone();
        x[136] = 4;
        x[140 + 3 * 66] = 32;
        assert!(PcrValues::parse(&x)
            .unwrap_err()
            .to_string()
            .contains("more values"));
        // Fewer values than selected PCRs.
        let mut y = b.clone();
        y[136] = 2;
        y[140 + 2 * 66] = 0;
        assert!(PcrValues::parse(&y)
            .unwrap_err()
            .to_string()
            .contains("no value for PCR 15"));
    }
}
