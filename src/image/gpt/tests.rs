//! Round trips through the GPT writer and reader, and the reader refusing damaged tables.

use super::*;

const T: Guid = Guid::from_str_const("4f68bce3-e8cd-4db1-96e7-fbcaf984b709");

fn disk(parts: &[NewPartition]) -> Vec<u8> {
    let total = 4096u64;
    let mut v = vec![0u8; (total * 512) as usize];
    write_gpt(&mut v, 512, total, Guid([7; 16]), parts).unwrap();
    v
}

fn part(first: u64, sectors: u64, u: u8) -> NewPartition {
    NewPartition {
        type_guid: T,
        uuid: Guid([u; 16]),
        first_lba: first,
        sectors,
        attrs: ATTR_READ_ONLY,
        name: "root-x86-64".into(),
    }
}

#[test]
fn mixed_endian_matches_the_spec_example() {
    // spec/systemd.md 3.2: data PARTUUID 2ef2e2b2-be1a-49fe-... is stored as b2e2f22e1abefe49...
    let g = Guid::parse("2ef2e2b2-be1a-49fe-8695-f8c5682e6feb").unwrap();
    assert_eq!(
        crate::hex::encode(&g.to_disk()[..8]),
        "b2e2f22e1abefe49".to_string()
    );
    assert_eq!(Guid::from_disk(&g.to_disk()), g);
    assert_eq!(g.to_string(), "2ef2e2b2-be1a-49fe-8695-f8c5682e6feb");
}

#[test]
fn round_trip() {
    let v = disk(&[part(2048, 100, 1), part(2148, 8, 2)]);
    let g = read_gpt(&v).unwrap();
    assert_eq!(g.sector, 512);
    assert_eq!(g.partitions.len(), 2);
    assert_eq!(g.partitions[0].uuid, Guid([1; 16]));
    assert_eq!(g.partitions[0].type_guid, T);
    assert_eq!(g.partitions[0].name, "root-x86-64");
    assert_eq!(g.partitions[1].offset(512), 2148 * 512);
    assert_eq!(g.partitions[1].size(512), 8 * 512);
}

#[test]
fn each_corruption_has_its_own_error() {
    let good = disk(&[part(2048, 100, 1)]);
    let mut v = good.clone();
    v[512 + 40] ^= 1;
    assert!(matches!(
        read_gpt(&v),
        Err(GptError::HeaderCrc {
            which: "primary",
            ..
        })
    ));
    let mut v = good.clone();
    v[1024 + 20] ^= 1;
    assert!(matches!(
        read_gpt(&v),
        Err(GptError::EntriesCrc {
            which: "primary",
            ..
        })
    ));
    let mut v = good.clone();
    let n = v.len();
    v[n - 512 + 40] ^= 1;
    assert!(matches!(
        read_gpt(&v),
        Err(GptError::HeaderCrc {
            which: "backup",
            ..
        })
    ));
    let v = good[..good.len() - 512].to_vec();
    assert!(matches!(read_gpt(&v), Err(GptError::Truncated { .. })));
    assert_eq!(read_gpt(&vec![0u8; 8192]), Err(GptError::NoTable));
    let v = disk(&[part(2048, 100, 1), part(2100, 8, 2)]);
    assert_eq!(read_gpt(&v), Err(GptError::Overlap { a: 1, b: 2 }));
}

#[test]
fn writer_refuses_partitions_outside_the_usable_area() {
    let mut v = Vec::new();
    assert!(write_gpt(&mut v, 512, 4096, Guid::NIL, &[part(10, 1, 1)]).is_err());
    assert!(write_gpt(&mut v, 512, 4096, Guid::NIL, &[part(4090, 10, 1)]).is_err());
}
