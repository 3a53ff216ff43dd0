//! Fuzz target: an image as `image verify` sees it, from the file on disk through dissection
//! (GPT, partitions, the signature partition's JSON, the verity superblock, or a bare image with
//! `.roothash`, `.verity` and `.roothash.p7s` sidecars) to the full verification with the release
//! check. Nothing is trusted, so nothing may verify as signed; it must never panic, and a refusal
//! must say which check failed.
//!
//! Input: one mode byte, then for sidecar mode three little-endian u16 lengths cutting the rest
//! into `.roothash`, `.verity` and `.roothash.p7s` contents, the remainder being the image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use verity::image::policy::Policy;
use verity::image::release::Scope;
use verity::image::verify::{verify, DataCheck, VerifyOptions};
use verity::image::{DissectOptions, Dissected};
use verity::sign::TrustStore;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("verity-fuzz-ddi-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(rest.len());
    let (a, b) = rest.split_at(n);
    *rest = b;
    a
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, mut rest)) = input.split_first() else {
        return;
    };
    let d = dir();
    let img = d.join("ext.raw");
    let sidecars = ["ext.roothash", "ext.verity", "ext.roothash.p7s"];
    for s in sidecars {
        let _ = std::fs::remove_file(d.join(s));
    }
    if mode & 1 == 1 && rest.len() >= 6 {
        let lens: Vec<usize> = rest[..6]
            .chunks(2)
            .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])))
            .collect();
        rest = &rest[6..];
        for (s, n) in sidecars.iter().zip(lens) {
            std::fs::write(d.join(s), take(&mut rest, n)).unwrap();
        }
    }
    std::fs::write(&img, rest).unwrap();
    let f = std::fs::File::open(&img).unwrap();
    let opts = DissectOptions {
        arch: Some("x86-64".into()),
    };
    let Ok(dissected) = Dissected::open(f, &img, &opts) else {
        return;
    };
    let policy = if mode & 2 == 0 {
        Policy::signed_only()
    } else {
        Policy::parse("root=verity+signed+unprotected+absent:usr=verity+signed+unprotected+absent")
            .unwrap()
    };
    let vopts = VerifyOptions {
        trust: TrustStore::from_certs(Vec::new()),
        policy,
        class: None,
        host: None,
        host_arch: "x86-64".into(),
        scope: Scope::System,
        read_release: true,
        data: DataCheck::Here,
    };
    let (_report, res) = verify(dissected, &vopts);
    if let Ok(v) = res {
        assert!(
            v.get().signer.is_none(),
            "an image verified as signed by an empty trust store"
        );
    }
});
