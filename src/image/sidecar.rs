//! Bare file-system images with sidecar verity data (spec/systemd.md 3.5): for `foo.raw`, the
//! files `foo.roothash` (hex, one line) or `foo.usrhash`, `foo.roothash.p7s` / `foo.usrhash.p7s`
//! (DER PKCS#7) and `foo.verity` (superblock and tree). Root variants are looked up first. Each
//! sidecar is opened once, like the image. The xattr forms (`user.verity.roothash`) are not read.

use super::ddi::{DissectError, Dissected, Extent, HashDevice, Layout, Signature};
use super::Class;
use crate::io::FileSource;
use crate::verity::BlockSource;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Largest `.roothash` file we read ([`crate::limits::ROOTHASH_FILE`]).
const MAX_ROOTHASH_FILE: u64 = crate::limits::ROOTHASH_FILE;

/// `foo.raw` + `suffix` -> `foo<suffix>`; names not ending in `.raw` get the suffix appended.
pub fn sidecar_path(image: &Path, suffix: &str) -> PathBuf {
    let s = image.as_os_str().to_string_lossy();
    let base = s.strip_suffix(".raw").unwrap_or(&s);
    PathBuf::from(format!("{base}{suffix}"))
}

/// Parses a `.roothash` file: hex, surrounding whitespace ignored, at least 16 bytes.
pub fn parse_roothash(text: &[u8]) -> Result<Vec<u8>, String> {
    let s = std::str::from_utf8(text).map_err(|_| "not text".to_string())?;
    let h = crate::hex::decode(s.trim()).map_err(|e| format!("not hex: {e}"))?;
    if h.len() < 16 {
        return Err(format!("root hash of {} bytes is shorter than 16", h.len()));
    }
    Ok(h)
}

fn open_optional(p: &Path) -> Result<Option<File>, DissectError> {
    match File::open(p) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DissectError::Io {
            path: p.to_path_buf(),
            msg: e.to_string(),
        }),
    }
}

fn read_small(f: File, p: &Path, max: u64) -> Result<Vec<u8>, DissectError> {
    let src = FileSource::from_file(f, p).map_err(|e| DissectError::Io {
        path: p.to_path_buf(),
        msg: e.to_string(),
    })?;
    if src.size() > max {
        return Err(DissectError::Sidecar {
            path: p.to_path_buf(),
            msg: format!("{} bytes is larger than the {max} allowed", src.size()),
        });
    }
    let mut buf = vec![0u8; src.size() as usize];
    src.read_at(&mut buf, 0).map_err(|e| DissectError::Io {
        path: p.to_path_buf(),
        msg: e.to_string(),
    })?;
    Ok(buf)
}

/// Where the signature of a bare image is looked for (`designator` root or usr; without a
/// `.roothash`/`.usrhash`, both), and `.p7s` files beside it whose name starts like the image's
/// (a misnamed signature, at most four, for the error message).
pub fn signature_search(
    image: &Path,
    designator: &str,
    has_roothash: bool,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let sfx: &[&str] = match (has_roothash, designator) {
        (true, "usr") => &[".usrhash.p7s"],
        (true, _) => &[".roothash.p7s"],
        (false, _) => &[".roothash.p7s", ".usrhash.p7s"],
    };
    let looked: Vec<PathBuf> = sfx.iter().map(|s| sidecar_path(image, s)).collect();
    let (Some(dir), Some(file)) = (image.parent(), image.file_name()) else {
        return (looked, Vec::new());
    };
    let file = file.to_string_lossy();
    let stem = file.strip_suffix(".raw").unwrap_or(&file);
    let stem = stem.split(['_', '+', '.']).next().unwrap_or(stem);
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut near: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| !looked.contains(p))
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with(stem) && n.ends_with(".p7s")
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    near.sort();
    near.truncate(4);
    (looked, near)
}

/// Dissects a bare image: the whole file is the data; sidecars supply tree, root hash, signature.
pub(super) fn dissect_bare(
    source: FileSource,
    path: &Path,
    name: String,
    class_hint: Option<Class>,
) -> Result<Dissected, DissectError> {
    let mut designator = "root";
    let mut root_hash = None;
    let mut p7s = None;
    for (d, hash_sfx, sig_sfx) in [
        ("root", ".roothash", ".roothash.p7s"),
        ("usr", ".usrhash", ".usrhash.p7s"),
    ] {
        let hp = sidecar_path(path, hash_sfx);
        if let Some(f) = open_optional(&hp)? {
            let text = read_small(f, &hp, MAX_ROOTHASH_FILE)?;
            root_hash = Some(parse_roothash(&text).map_err(|msg| DissectError::Sidecar {
                path: hp.clone(),
                msg,
            })?);
            designator = d;
            let sp = sidecar_path(path, sig_sfx);
            if let Some(f) = open_optional(&sp)? {
                let der = read_small(f, &sp, crate::limits::SIGNATURE)?;
                if der.is_empty() {
                    return Err(DissectError::Sidecar {
                        path: sp,
                        msg: "empty signature file".into(),
                    });
                }
                p7s = Some(der);
            }
            break;
        }
    }
    let vp = sidecar_path(path, ".verity");
    let verity = match open_optional(&vp)? {
        Some(f) => {
            let src = FileSource::from_file(f, &vp).map_err(|e| DissectError::Io {
                path: vp.clone(),
                msg: e.to_string(),
            })?;
            let size = src.size();
            Some(HashDevice {
                source: src,
                extent: Extent { offset: 0, size },
                uuid: None,
            })
        }
        None => None,
    };
    if verity.is_some() != root_hash.is_some() {
        return Err(DissectError::Sidecar {
            path: path.to_path_buf(),
            msg: if verity.is_some() {
                "a .verity sidecar without a .roothash or .usrhash".into()
            } else {
                "a .roothash/.usrhash sidecar without a .verity hash tree".into()
            },
        });
    }
    let size = source.size();
    Ok(Dissected {
        source,
        name,
        class_hint,
        layout: Layout::Bare,
        arch: None,
        designator,
        data: Extent { offset: 0, size },
        data_uuid: None,
        data_attrs: None,
        verity,
        signature: p7s.map(Signature::P7s),
        sidecar_root_hash: root_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_search_names_the_sidecar_and_misnamed_neighbours() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("foo_1.2.raw");
        for n in [
            "foo_1.2.raw.p7s",
            "foo.p7s",
            "bar.roothash.p7s",
            "foo_1.2.roothash.p7s",
        ] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        let (looked, near) = signature_search(&img, "root", true);
        assert_eq!(looked, [d.path().join("foo_1.2.roothash.p7s")]);
        assert_eq!(
            near,
            [d.path().join("foo.p7s"), d.path().join("foo_1.2.raw.p7s")]
        );
        let (looked, _) = signature_search(&img, "usr", false);
        assert_eq!(looked.len(), 2);
    }

    #[test]
    fn names_and_roothash() {
        assert_eq!(
            sidecar_path(Path::new("/x/foo.raw"), ".roothash.p7s"),
            PathBuf::from("/x/foo.roothash.p7s")
        );
        assert_eq!(
            sidecar_path(Path::new("foo.img"), ".verity"),
            PathBuf::from("foo.img.verity")
        );
        assert_eq!(
            parse_roothash(b"0011223344556677889900aabbccddeeff\n")
                .unwrap()
                .len(),
            17
        );
        assert!(parse_roothash(b"00112233").is_err());
        assert!(parse_roothash(b"zz").is_err());
    }
}
