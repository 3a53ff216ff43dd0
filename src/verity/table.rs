//! The kernel's `verity` target table line (the parameters after `<start> <len> verity`).

use super::geometry::Geometry;
use crate::hex;

/// Optional FEC arguments for a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FecArgs {
    /// Parity device (path or major:minor).
    pub device: String,
    /// RS roots, 2..=24.
    pub roots: u32,
    /// Covered blocks.
    pub blocks: u64,
    /// Parity start, in blocks.
    pub start: u64,
}

/// Table length in 512-byte sectors.
pub fn length_sectors(geom: &Geometry) -> u64 {
    geom.data_size() / 512
}

/// The target parameters in veritysetup's argument order. Hex is lower case: a signature is made
/// over exactly this root-hash text.
pub fn params(
    geom: &Geometry,
    data_dev: &str,
    hash_dev: &str,
    root: &[u8],
    fec: Option<&FecArgs>,
    sig_key_desc: Option<&str>,
) -> String {
    let p = &geom.params;
    let salt = if p.salt.is_empty() {
        "-".to_string()
    } else {
        hex::encode(&p.salt)
    };
    let mut s = format!(
        "{} {} {} {} {} {} {} {} {} {}",
        p.hash_type,
        data_dev,
        hash_dev,
        p.data_block_size,
        p.hash_block_size,
        p.data_blocks,
        geom.hash_start_block,
        p.alg.name(),
        hex::encode(root),
        salt
    );
    let mut opts: Vec<String> = Vec::new();
    if let Some(f) = fec {
        opts.extend([
            "use_fec_from_device".into(),
            f.device.clone(),
            "fec_start".into(),
            f.start.to_string(),
            "fec_blocks".into(),
            f.blocks.to_string(),
            "fec_roots".into(),
            f.roots.to_string(),
        ]);
    }
    if let Some(k) = sig_key_desc {
        opts.extend(["root_hash_sig_key_desc".into(), k.to_string()]);
    }
    if !opts.is_empty() {
        s.push_str(&format!(" {} {}", opts.len(), opts.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::HashAlg;
    use crate::verity::Params;

    #[test]
    fn vector_b_table() {
        let g = Geometry::new(
            Params {
                alg: HashAlg::Sha256,
                data_block_size: 4096,
                hash_block_size: 4096,
                data_blocks: 300,
                salt: hex::decode(
                    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                )
                .unwrap(),
                hash_type: 1,
            },
            1,
        )
        .unwrap();
        let root = hex::decode("f58e1da6a50fd0093382375ae01c9a03d9aa4d13e9651e046f18b93571973adf")
            .unwrap();
        assert_eq!(length_sectors(&g), 2400);
        assert_eq!(
            params(&g, "7:0", "7:1", &root, None, None),
            "1 7:0 7:1 4096 4096 300 1 sha256 f58e1da6a50fd0093382375ae01c9a03d9aa4d13e9651e046f18b93571973adf 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        let fec = FecArgs {
            device: "7:2".into(),
            roots: 2,
            blocks: 304,
            start: 0,
        };
        assert!(params(&g, "7:0", "7:1", &root, Some(&fec), Some("cryptsetup:x-vtest")).ends_with(
            " 10 use_fec_from_device 7:2 fec_start 0 fec_blocks 304 fec_roots 2 root_hash_sig_key_desc cryptsetup:x-vtest"
        ));
    }
}
