//! The test vectors of shared/spec/dm-verity.md section 6 (made with veritysetup 2.6.1): the CLI must
//! reproduce every root hash and every hash file byte for byte (checked by SHA-256).

mod tree_support;
use tree_support::*;

struct Vector {
    id: &'static str,
    input: &'static str,
    args: &'static [&'static str],
    root: &'static str,
    size: u64,
    sha: &'static str,
}

const VECTORS: &[Vector] = &[
    Vector { id: "A", input: "A", args: &[], root: "3359f56b537108c2c32db2f12ba0fa592b5f06e2ae1311ca44c35e923060c96d", size: 4096, sha: "611cafdb22ae38bb782048b500e8e7b46dcd66ad72e63e80635798bc7f82e712" },
    Vector { id: "B", input: "B", args: &[], root: "f58e1da6a50fd0093382375ae01c9a03d9aa4d13e9651e046f18b93571973adf", size: 20480, sha: "22526ab3f8be1af23bfa0b4787182067887cad1af243335c52fd45a1a0e24526" },
    Vector { id: "C", input: "C", args: &[], root: "74b3778c7811c4a484ababcc8f0c28a6619b15307299ed9908bc6338cb4ea4d5", size: 20480, sha: "ac71e76d94510897f18ec6416a781e061d32b693a26fa85a90a79259e46404dd" },
    Vector { id: "D", input: "D", args: &[], root: "aecdd993597f4ba41d4c44a1c65f100de149680886130ac5675499eb2e39c015", size: 16384, sha: "a9d1259b3198100d8ed51b34aa117218dfd395bb895ae83070a7c22c32c262e9" },
    Vector { id: "E", input: "E", args: &[], root: "52ec0d93fd4dc67b58586bb449f734e6df8ec94662245269f7ed3b74ed15c3eb", size: 544768, sha: "c9e6d3a0f502a057516b7fef5024ea561e733d9fc86df5334e794267d6c8df49" },
    Vector { id: "B512", input: "B", args: &["--hash=sha512"], root: "fed5a11c1d84b063d32ab79ae02109617e69f5ac2a77793ef90f9d98f4f551ba1a61b46149232aaa526255640d39f77ab785b6510ce0a1acac8773e888ff11ec", size: 28672, sha: "9586c1b3b7bf8ea47920dd4a98d5bb4e8a78bba685afbdfd1afc56d1a712b83c" },
    Vector { id: "Bsha1", input: "B", args: &["--hash=sha1"], root: "e0ef910e4d69acdbf611ba5cce63301836ab4d15", size: 20480, sha: "8cee2ffb0cb361308860b427a3ba207e70b1fb2868a9f1dd3e89b2d653fec6d0" },
    Vector { id: "B1k", input: "B", args: &["--data-block-size=1024", "--hash-block-size=4096"], root: "98564ccfca3c719019d78008efb194066c30fb5ece4228597381630f66e05e8f", size: 49152, sha: "764dddb963514bf1fad22351f349faed82a36ade5d3d056d160042bc72ec1f0b" },
    Vector { id: "Bf0", input: "B", args: &["--format=0"], root: "b3d70b2402f77830c8cfb35295856e1cd7231ba14a753e0dbc1dc069d61bdfd0", size: 20480, sha: "1976b2350e991bc75bdf3db63edbc6051960bb68777e90f10e76220b01afd0d2" },
    Vector { id: "Bf0sha1", input: "B", args: &["--format=0", "--hash=sha1"], root: "361bea655f2a6646182bfee1f2659c87f8bd6f28", size: 20480, sha: "b5608d18042bc1c1989b25aece47a8f3e1a47c2b22e0d76d73bb61922e2ff87a" },
    Vector { id: "Bnosalt", input: "B", args: &["--salt=-"], root: "a67caf5654edcd698da31802175f776403d60f8ff346fc3d5ddd8b5d09f0adb9", size: 20480, sha: "d003039c671a8180175ac0da7e93b540af0c2bceb3661ac1eb0dcdde5da55a3a" },
    Vector { id: "B512blk", input: "B", args: &["--data-block-size=512", "--hash-block-size=512"], root: "cb628beba55a110475a61b515c2d9afe1c88f16e6494b6c0c30bd072a619f302", size: 82944, sha: "ac3635543fc8e6596af608969709691834bf991ffc247cfc66e9596770f3f988" },
];

fn input(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{id}.img"));
    let bytes = match id {
        "A" => vec![0u8; 4096],
        "B" => pattern(4096 * 300),
        "C" => pattern(1048576 + 4096),
        "D" => pattern(1048576 + 100),
        "E" => vec![0u8; 4096 * 16385],
        _ => unreachable!(),
    };
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn inputs_match_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    for (id, sha) in [
        (
            "A",
            "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7",
        ),
        (
            "B",
            "94f3da4f123bcd244373b3116bd3e56054dab8250340fa2e0a129fd7fb1d1b48",
        ),
        (
            "D",
            "51a6eef401c0119654ac362ad4ee6d51d8d169da32f9ff13e0b8a30829964970",
        ),
    ] {
        assert_eq!(sha256_file(&input(dir.path(), id)), sha, "input {id}");
    }
}

#[test]
fn cli_reproduces_every_vector() {
    let dir = tempfile::tempdir().unwrap();
    for v in VECTORS {
        let data = input(dir.path(), v.input);
        let hash = dir.path().join(format!("{}.hash", v.id));
        let out = ok(verity()
            .arg("format")
            .arg(format!("--salt={SALT}"))
            .arg(format!("--uuid={UUID}"))
            .args(v.args)
            .arg(&data)
            .arg(&hash));
        assert_eq!(
            field(&out, "Root hash:").as_deref(),
            Some(v.root),
            "{} root",
            v.id
        );
        assert_eq!(
            std::fs::metadata(&hash).unwrap().len(),
            v.size,
            "{} size",
            v.id
        );
        assert_eq!(sha256_file(&hash), v.sha, "{} hash file", v.id);
        ok(verity().arg("verify").arg(&data).arg(&hash).arg(v.root));
    }
}

#[test]
fn no_superblock_vector_is_b_without_its_first_block() {
    let dir = tempfile::tempdir().unwrap();
    let data = input(dir.path(), "B");
    let hash = dir.path().join("Bnosb.hash");
    let out = ok(verity()
        .args(["format", "--no-superblock", &format!("--salt={SALT}")])
        .arg(&data)
        .arg(&hash));
    assert_eq!(
        field(&out, "Root hash:").as_deref(),
        Some("f58e1da6a50fd0093382375ae01c9a03d9aa4d13e9651e046f18b93571973adf")
    );
    assert_eq!(
        sha256_file(&hash),
        "f0c8969605c472cd743ad86ccef2ba05febdfd5ad2f2819f6b074b64ed326d0b"
    );
    ok(verity()
        .args(["verify", "--no-superblock", &format!("--salt={SALT}")])
        .arg(&data)
        .arg(&hash)
        .arg("f58e1da6a50fd0093382375ae01c9a03d9aa4d13e9651e046f18b93571973adf"));
}

#[test]
fn dump_prints_veritysetup_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = input(dir.path(), "B");
    let hash = dir.path().join("B.hash");
    ok(verity()
        .args([
            "format",
            &format!("--salt={SALT}"),
            &format!("--uuid={UUID}"),
        ])
        .arg(&data)
        .arg(&hash));
    let out = ok(verity().arg("dump").arg(&hash));
    let expected = format!(
        "VERITY header information for {}\nUUID:            \t{UUID}\nHash type:       \t1\nData blocks:     \t300\nData block size: \t4096\nHash blocks:     \t4\nHash block size: \t4096\nHash algorithm:  \tsha256\nSalt:            \t{SALT}\nHash device size: \t20480 [bytes]\n",
        hash.display()
    );
    assert_eq!(out, expected);
}
