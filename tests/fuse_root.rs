//! Point 1 of issue 12 end to end: a signed sysext served through FUSE whose data block is altered
//! and whose level-0 hash block above it is genuine on the first read and forged (to match the
//! altered data) on every later read, as a malicious network or FUSE file can do. `verity sysext
//! merge --integrity userspace` (swtpm) and `verity image verify` must refuse it with exit 1 and
//! measure nothing: no event-log record, PCR 13 unchanged. The same image served honestly merges
//! and verifies, so the refusal is the forgery's doing, not the FUSE setup's.
//! Needs root (FUSE and loop mounts inside `unshare -m`), fuse3 (fusermount3), swtpm, erofs-utils.

#[path = "support/swtpm.rs"]
mod swtpm;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use swtpm::Swtpm;
use verity::verity::{geometry::hash_start_block, Geometry, Superblock};

const BIN: &str = env!("CARGO_BIN_EXE_verity");
const BLOCK: u64 = 4096;
const FILE_INO: u64 = 2;

/// What the FUSE file serves.
struct Served {
    genuine: Vec<u8>,
    forged: Vec<u8>,
    /// The level-0 hash block (file block number) that answers genuinely only once.
    two_faced: u64,
    /// Serve `forged` (with the one genuine first read) instead of `genuine`.
    forge: AtomicBool,
    /// Reads of each file block, per phase.
    reads: Mutex<HashMap<u64, u32>>,
}

struct TwoFacedFs(Arc<Served>);

fn attr(ino: u64, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: if ino == 1 {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: if ino == 1 { 0o755 } else { 0o644 },
        nlink: if ino == 1 { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

impl Filesystem for TwoFacedFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if u64::from(parent) == 1 && name == "ext.raw" {
            let size = self.0.genuine.len() as u64;
            reply.entry(&Duration::ZERO, &attr(FILE_INO, size), fuser::Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match u64::from(ino) {
            1 => reply.attr(&Duration::ZERO, &attr(1, 0)),
            FILE_INO => reply.attr(
                &Duration::ZERO,
                &attr(FILE_INO, self.0.genuine.len() as u64),
            ),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // No page cache: every read reaches us, as on network storage.
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let s = &self.0;
        if u64::from(ino) != FILE_INO {
            return reply.error(Errno::ENOENT);
        }
        let end = (offset + size as u64).min(s.genuine.len() as u64);
        if offset >= end {
            return reply.data(&[]);
        }
        let forge = s.forge.load(Ordering::SeqCst);
        let mut out =
            if forge { &s.forged } else { &s.genuine }[offset as usize..end as usize].to_vec();
        let mut reads = s.reads.lock().unwrap();
        for b in offset / BLOCK..end.div_ceil(BLOCK) {
            let n = reads.entry(b).or_insert(0);
            if forge && b == s.two_faced && *n == 0 {
                let (a, z) = ((b * BLOCK).max(offset), ((b + 1) * BLOCK).min(end));
                out[(a - offset) as usize..(z - offset) as usize]
                    .copy_from_slice(&s.genuine[a as usize..z as usize]);
            }
            *n += 1;
        }
        reply.data(&out);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if u64::from(ino) != 1 {
            return reply.error(Errno::ENOENT);
        }
        let entries = [
            (1, FileType::Directory, "."),
            (1, FileType::Directory, ".."),
            (FILE_INO, FileType::RegularFile, "ext.raw"),
        ];
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

fn keys() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn write(p: &Path, s: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// A signed sysext DDI with 2 MiB of incompressible payload (two tree levels), and where its
/// data and verity partitions start.
fn build_image(dir: &Path) -> (Vec<u8>, u64, u64) {
    let src = dir.join("src");
    write(
        &src.join("usr/lib/extension-release.d/extension-release.ext"),
        b"ID=debian\nVERSION_ID=12\n",
    );
    let payload: Vec<u8> = (0..65536u32)
        .flat_map(|i| verity::digest::HashAlg::Sha256.digest(&i.to_le_bytes()))
        .collect();
    write(&src.join("usr/share/ext/payload"), &payload);
    let img = dir.join("ext.raw");
    let st = Command::new(BIN)
        .args(["image", "build", "--class", "sysext", "--key"])
        .arg(keys().join("rsa2048.key"))
        .arg("--cert")
        .arg(keys().join("rsa2048.crt"))
        .arg("-o")
        .arg(&img)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "verity image build failed");
    let bytes = std::fs::read(&img).unwrap();
    let g = verity::image::gpt::read_gpt(&bytes).unwrap();
    let off = |i: usize| g.partitions[i].offset(g.sector);
    (bytes.clone(), off(0), off(1))
}

/// Alters data block `victim` and forges the level-0 digest above it; returns the forged image
/// and the file block of that level-0 hash block.
fn forge(genuine: &[u8], data_off: u64, hash_off: u64, victim: u64) -> (Vec<u8>, u64) {
    let sb = Superblock::parse(&genuine[hash_off as usize..]).unwrap();
    let p = sb.params();
    let geom = Geometry::new(
        p.clone(),
        hash_start_block(0, p.hash_block_size, true).unwrap(),
    )
    .unwrap();
    assert_eq!(
        geom.levels.len(),
        2,
        "the test needs a level 0 below the top"
    );
    assert!(victim < p.data_blocks);
    let mut f = genuine.to_vec();
    let at = (data_off + victim * BLOCK) as usize;
    f[at + 100] ^= 0xff;
    let h = verity::verity::hasher::BlockHasher::new(p.alg, &p.salt, p.hash_type);
    let d = h.hash(&f[at..at + BLOCK as usize]);
    let (abs, slot) = geom.locate(0, victim);
    let o = (hash_off + abs * BLOCK) as usize + slot;
    f[o..o + d.len()].copy_from_slice(&d);
    (f, (hash_off + abs * BLOCK) / BLOCK)
}

fn sh(script: &str, envs: &[(&str, &dyn AsRef<OsStr>)]) -> Output {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-uc", script])
        .env("V", BIN);
    for (k, v) in envs {
        c.env(k, v.as_ref());
    }
    let o = c
        .output()
        .expect("unshare (util-linux) must be installed and the test run as root");
    eprintln!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Records of the image itself: swtpm needs `--dangerous-tpm-simulator`, which logs its own
/// `dangerous:tpm-simulator:<event>` record next to each image record; those are not counted here.
fn image_records(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("sysext:ext:") && !l.contains("dangerous:"))
        .count()
}

#[test]
fn fuse_root_swtpm_point1_two_faced_level0_is_refused_by_merge_and_image_verify() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (genuine, data_off, hash_off) = build_image(d);
    let (forged, two_faced) = forge(&genuine, data_off, hash_off, 300);
    let served = Arc::new(Served {
        genuine,
        forged,
        two_faced,
        forge: AtomicBool::new(false),
        reads: Mutex::new(HashMap::new()),
    });
    let r = d.join("root");
    write(&r.join("etc/os-release"), b"ID=debian\nVERSION_ID=12\n");
    write(&r.join("usr/share/host"), b"h\n");
    let ext = r.join("var/lib/extensions");
    std::fs::create_dir_all(&ext).unwrap();
    let trust = d.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(keys().join("rsa2048.crt"), trust.join("rsa2048.crt")).unwrap();
    let mut cfg = fuser::Config::default();
    cfg.mount_options.extend([
        fuser::MountOption::RO,
        fuser::MountOption::FSName("twofaced".into()),
    ]);
    let session = fuser::spawn_mount(TwoFacedFs(served.clone()), &ext, &cfg)
        .expect("FUSE mount (needs root, /dev/fuse and fusermount3 from fuse3)");
    let img = ext.join("ext.raw");
    let host = r.join("etc/os-release");

    let tpm = Swtpm::start();
    let log = d.join("tpm2-measure.log");
    let merge = format!(
        "--root {} --trust {} --tpm {} --event-log {} --integrity userspace --dangerous-tpm-simulator",
        r.display(),
        trust.display(),
        tpm.spec(),
        log.display()
    );
    let verify = |served: &Served| {
        served.reads.lock().unwrap().clear();
        let o = Command::new(BIN)
            .args(["image", "verify", "--trust"])
            .arg(&trust)
            .arg("--os-release")
            .arg(&host)
            .arg(&img)
            .output()
            .unwrap();
        eprintln!("image verify: {}", String::from_utf8_lossy(&o.stderr));
        o
    };
    let merge_once = |served: &Served| {
        served.reads.lock().unwrap().clear();
        sh(
            r#"$V sysext merge $M; echo "RC=$?"; cat $R/usr/share/ext/payload >/dev/null 2>&1 && echo MERGED; $V sysext unmerge --root $R >/dev/null 2>&1; true"#,
            &[("M", &merge), ("R", &r)],
        )
    };

    // Honest: verifies and merges (one record), so FUSE itself is not what fails below.
    let o = verify(&served);
    assert_eq!(o.status.code(), Some(0), "honest image through FUSE");
    let o = merge_once(&served);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("RC=0") && s.contains("MERGED"), "{s}");
    let honest_records = image_records(&std::fs::read_to_string(&log).unwrap());
    assert_eq!(honest_records, 1);
    let pcr_before = tpm.pcrread("sha256", 13);

    // Two-faced: refused by both, nothing measured.
    served.forge.store(true, Ordering::SeqCst);
    let o = merge_once(&served);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("RC=1") && !s.contains("MERGED"), "{s}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("data block 300"),
        "the altered block is named"
    );
    assert!(
        served
            .reads
            .lock()
            .unwrap()
            .get(&two_faced)
            .copied()
            .unwrap_or(0)
            >= 1,
        "the forged level-0 block was never read: the test did not exercise the attack"
    );
    let o = verify(&served);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("data block 300"));

    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        image_records(&text),
        honest_records,
        "the forged image was measured: {text}"
    );
    assert_eq!(tpm.pcrread("sha256", 13), pcr_before, "PCR 13 changed");
    session.umount_and_join().unwrap();
}
