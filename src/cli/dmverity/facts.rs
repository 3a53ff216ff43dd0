//! What `verity format` prints after building a tree and `verity dump` prints for an existing one:
//! veritysetup's `Key:\tvalue` lines in its order and spelling, or the same facts as JSON.

use super::CommonArgs;
use crate::hex;
use crate::verity::superblock::uuid_to_string;
use crate::verity::Geometry;
use serde_json::json;
use std::path::Path;

/// Facts printed after format and by dump, in veritysetup's order and spelling.
pub(super) struct Facts<'a> {
    pub(super) hash_path: &'a Path,
    pub(super) uuid: Option<[u8; 16]>,
    pub(super) geom: &'a Geometry,
    pub(super) root: Option<&'a [u8]>,
    /// veritysetup prints the hash device size only for a tree at offset 0.
    pub(super) hash_device_size: Option<u64>,
    /// FEC lines: after "Hash algorithm", and at the end.
    pub(super) fec: Option<(Vec<String>, Vec<String>)>,
}

pub(super) fn print_facts(f: &Facts, json_out: bool) {
    let p = &f.geom.params;
    let salt = if p.salt.is_empty() {
        "-".to_string()
    } else {
        hex::encode(&p.salt)
    };
    let uuid = f.uuid.map(|u| uuid_to_string(&u)).unwrap_or_default();
    if json_out {
        let mut v = json!({
            "hash_device": f.hash_path.display().to_string(),
            "uuid": if uuid.is_empty() { serde_json::Value::Null } else { uuid.clone().into() },
            "hash_type": p.hash_type,
            "data_blocks": p.data_blocks,
            "data_block_size": p.data_block_size,
            "hash_blocks": f.geom.tree_blocks(),
            "hash_block_size": p.hash_block_size,
            "hash_algorithm": p.alg.name(),
            "salt": salt,
            "hash_start_block": f.geom.hash_start_block,
            "hash_device_size": f.hash_device_size,
        });
        if let Some((mid, end)) = &f.fec {
            let pairs: serde_json::Map<String, serde_json::Value> = mid
                .iter()
                .chain(end)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| {
                    let v = v.trim().trim_end_matches(" [bytes]");
                    let key = k.to_ascii_lowercase().replace(' ', "_");
                    (key, v.parse::<u64>().map(Into::into).unwrap_or(v.into()))
                })
                .collect();
            v["fec"] = pairs.into();
        }
        if let Some(r) = f.root {
            v["root_hash"] = hex::encode(r).into();
        }
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return;
    }
    println!("VERITY header information for {}", f.hash_path.display());
    println!("UUID:            \t{uuid}");
    println!("Hash type:       \t{}", p.hash_type);
    println!("Data blocks:     \t{}", p.data_blocks);
    println!("Data block size: \t{}", p.data_block_size);
    println!("Hash blocks:     \t{}", f.geom.tree_blocks());
    println!("Hash block size: \t{}", p.hash_block_size);
    println!("Hash algorithm:  \t{}", p.alg.name());
    for l in f.fec.iter().flat_map(|(mid, _)| mid) {
        println!("{l}");
    }
    println!("Salt:            \t{salt}");
    if let Some(r) = f.root {
        println!("Root hash:      \t{}", hex::encode(r));
    }
    if let Some(size) = f.hash_device_size {
        println!("Hash device size: \t{size} [bytes]");
    }
    for l in f.fec.iter().flat_map(|(_, end)| end) {
        println!("{l}");
    }
}

/// veritysetup's "Hash device size": the tree's end, plus the parity when it follows the tree on
/// the same device; only printed for a tree at offset 0.
pub(super) fn hash_device_size(
    c: &CommonArgs,
    geom: &Geometry,
    fec_on_hash_blocks: u64,
) -> Option<u64> {
    (c.hash_offset == 0).then(|| {
        (geom.hash_start_block + geom.tree_blocks() + fec_on_hash_blocks)
            * geom.params.hash_block_size as u64
    })
}
